"""Custom Lava processes of the backend (alone in this package: Lava re-executes every
module beside a process module when it searches for process models)."""
