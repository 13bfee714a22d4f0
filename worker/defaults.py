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
    # A connection that has not sent a whole request head (or stops sending its body) this long is closed.
    "CLAUDE_MEM_REQUEST_TIMEOUT_SECONDS": "10",
    # Readiness fails when no queued event settles for this long while work is due (a wedged agent).
    "CLAUDE_MEM_STALL_SECONDS": "300",
    # A spent gateway budget pauses all processing; after this long one request probes whether it allows again.
    "CLAUDE_MEM_BUDGET_RETRY_SECONDS": "60",
    # The memory agent's conversation is bounded so a model call costs the same early and late in a session:
    # once a call's input reaches this many tokens, or after this long without a turn, the next turn starts
    # a fresh conversation that opens with a short digest of the session (built from the store).
    "CLAUDE_MEM_AGENT_CONTEXT_TOKENS": "12000",
    "CLAUDE_MEM_AGENT_IDLE_SECONDS": "300",
    "CLAUDE_MEM_AGENT_DIGEST_CHARS": "3000",
    # What one tool event may send to the memory agent: each long text value is cut to FIELD chars (head and
    # tail kept, with a marker), the whole event to EVENT chars. Pre-edit copies and duplicates never go.
    "CLAUDE_MEM_EVENT_FIELD_MAX_CHARS": "3000",
    "CLAUDE_MEM_EVENT_MAX_CHARS": "8000",
    # Tokens (input, cached input and output) the memory agent may use per UTC day; 0 = no local limit.
    # When spent, processing pauses (events kept) until the next UTC day or until the value is raised.
    "CLAUDE_MEM_DAILY_TOKEN_BUDGET": "0",
    # The vector store (Chroma client, embedding model) runs in a child process, replaced when a call leaves it
    # above MAX_MB, so the worker itself stays small; false runs it inside the worker.
    "CLAUDE_MEM_VECTOR_PROCESS": "true",
    "CLAUDE_MEM_VECTOR_PROCESS_MAX_MB": "500",
    # Read the store-wide search index when the worker starts and a project's when one of its sessions starts, so a
    # first semantic search does not wait for it (seconds at a million observations); false reads each at first use.
    "CLAUDE_MEM_VECTOR_PRELOAD": "true",
    # A project with more observations than this gets its own keyword index (fts_partition): searches scoped to it
    # walk only its rows, ranked as the store-wide index ranks them (fts_rank), for a second copy of its indexed
    # text on disk; 0 (the default) = none (README: "Per-project keyword indexes" for the trade-off).
    "CLAUDE_MEM_PROJECT_INDEX_ROWS": "0",
    # A done event's raw text (the tool's input and output) is deleted this many days after it was posted; its
    # observations stay, failed and waiting events are kept (worker/event_retention.py); 0 = keep every event.
    "CLAUDE_MEM_EVENT_RETENTION_DAYS": "30",
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
