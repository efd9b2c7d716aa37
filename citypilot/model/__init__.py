"""The city model: entities, attributes, types, geometry, ids and validation."""
