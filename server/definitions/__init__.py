"""Process definitions shipped with the server (YAML, DESIGN.md §4.3), stored at start
when absent (`server/shipped_definitions.py`)."""
