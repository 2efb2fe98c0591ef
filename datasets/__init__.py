"""Data: index and manifest schemas, media decoding, the face pipeline, torch datasets, demo media."""
