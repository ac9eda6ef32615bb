"""Consume a DynamoDB stream outside Lambda: KCL leases and checkpoints, Python record processing."""

__version__ = "0.1.0"
