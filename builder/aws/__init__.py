"""The AWS side of the builder (boto3): instances of the platform, their volumes, role and network."""
