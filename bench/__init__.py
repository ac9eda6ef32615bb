"""Benchmarks of the service against a Java reference processor and a hand-written boto3 poller (`make bench`)."""
