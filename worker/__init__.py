"""claude-mem-worker: a self-hostable memory service for Claude Code.

Kept import-free on purpose: the hook command imports this package on every hook.
"""

__version__ = "0.1.0"
