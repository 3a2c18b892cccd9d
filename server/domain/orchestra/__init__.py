"""The Orchestra process engine (DESIGN.md §4.3, §9; issue 11).

- `definitions.py`: process definitions, immutable versions (the file format, the
  admin operations);
- `validation.py`: the load-time rules, every error naming its node or flow;
- `cel_conditions.py`: CEL conditions (cel-python), compiled once at load;
- `durations.py`: ISO 8601 timer durations;
- `variables.py`: variable names and the size cap;
- `engine.py`: one step of an instance, pure: tokens moving over nodes;
- `instances.py`: the cross-site operations and the engine's own moves (timers,
  job endings), each one unit of work with its events.
"""
