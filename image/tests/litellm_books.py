"""What the image suite reads of LiteLLM's books: its tables and a spend row's key alias. Kept apart
(no pytest here) so that tests/test_litellm_migrations.py runs the same queries on the real schema."""

from __future__ import annotations

TABLES = ("LiteLLM_VerificationToken", "LiteLLM_SpendLogs")  # what ensure-keys.py and the spend books use
# The alias of the key a spend row was booked to: LiteLLM keeps it in the row's metadata.
SPEND_ROW = """SELECT metadata->>'user_api_key_alias' FROM "LiteLLM_SpendLogs" WHERE api_key = '{hashed}'"""
