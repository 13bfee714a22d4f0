"""HTTP routes; `app.create_app` is the one factory."""
