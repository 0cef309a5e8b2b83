"""The social prescribing record: model, JSON Schema, check, outcome record, workflow states."""
