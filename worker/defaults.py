"""Setting names and defaults (SPEC.md section 2).

A module without imports, shared by the settings loader and the hook command, so the
hook's start-up stays a few milliseconds.
"""

DEFAULTS: dict[str, str] = {
    "CLAUDE_MEM_PROVIDER": "claude",
    "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "subscription",
    "CLAUDE_MEM_MODEL": "claude-haiku-4-5-20251001",
    "CLAUDE_MEM_WORKER_HOST": "127.0.0.1",
    "CLAUDE_MEM_WORKER_PORT": "37777",
    "CLAUDE_MEM_WORKER_URL": "",
    "CLAUDE_MEM_WORKER_TOKEN": "",
    # Host names (besides loopback and IP addresses) the worker answers to: a reverse proxy's or a team
    # server's name, comma-separated, `*.example.com` allowed. Anything else may be a DNS-rebinding page.
    "CLAUDE_MEM_ALLOWED_HOSTS": "",
    # The SessionStart hook starts the local worker when it does not answer (not with CLAUDE_MEM_WORKER_URL).
    "CLAUDE_MEM_WORKER_AUTOSTART": "true",
    "CLAUDE_MEM_SKIP_TOOLS": "ListMcpResourcesTool,SlashCommand,Skill,TodoWrite,AskUserQuestion",
    "CLAUDE_MEM_EXCLUDED_PROJECTS": "",
    "CLAUDE_MEM_CONTEXT_OBSERVATIONS": "50",
    "CLAUDE_MEM_CONTEXT_SESSION_COUNT": "10",
    "CLAUDE_MEM_CONTEXT_TOKEN_BUDGET": "4000",
    "CLAUDE_MEM_MAX_CONCURRENT_AGENTS": "2",
    "CLAUDE_MEM_MAX_ATTEMPTS": "5",
    "CLAUDE_MEM_CHROMA_ENABLED": "true",
    "CLAUDE_MEM_CHROMA_URL": "",
    "CLAUDE_MEM_OPENROUTER_MODEL": "xiaomi/mimo-v2-flash:free",
    "CLAUDE_MEM_OPENROUTER_BASE_URL": "",
    "CLAUDE_MEM_GEMINI_MODEL": "gemini-flash-latest",
    "CLAUDE_MEM_GEMINI_BASE_URL": "",
    "CLAUDE_MEM_LOG_LEVEL": "INFO",
    "CLAUDE_MEM_MAX_BODY_BYTES": "1048576",
    # Readiness fails when no queued event settles for this long while work is due (a wedged agent).
    "CLAUDE_MEM_STALL_SECONDS": "300",
    # A spent gateway budget pauses all processing; after this long one request probes whether it allows again.
    "CLAUDE_MEM_BUDGET_RETRY_SECONDS": "60",
}

# Keys read from ~/.claude-mem/.env, and no others.
CREDENTIAL_KEYS: tuple[str, ...] = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "OPENROUTER_API_KEY",
    "GEMINI_API_KEY",
)

SECRET_SETTINGS: frozenset[str] = frozenset({"CLAUDE_MEM_WORKER_TOKEN"})
