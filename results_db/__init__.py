"""What was tried and how it did: SQLAlchemy models and the store API."""
