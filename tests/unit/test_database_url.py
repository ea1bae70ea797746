"""LiteLLM's DATABASE_URL holds the PostgreSQL password quoted: what a URL gives a meaning to stays in the password."""

from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg2.extensions
from ansible_collections.thorfleet.llm.plugins.test import numbers
from rendering import render

# At least 16 characters, as the postgres role requires, with every character that means something in a URL.
PASSWORD = "p@ss/w#rd:50%?&=+ [x]~"


def test_the_password_survives_the_database_url(monkeypatch):
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(Path(numbers.__file__).parents[5]))  # as the tests import it
    url = render(postgres_password=PASSWORD)["litellm_database_url"]
    assert PASSWORD not in url
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == ("postgresql", "ai-postgres", 5432, "/litellmdb")
    assert (unquote(parts.username), unquote(parts.password)) == ("litellm", PASSWORD)
    # As libpq reads it (litellm-sim connects with psycopg2; LiteLLM's Prisma decodes the same way).
    dsn = psycopg2.extensions.parse_dsn(url)
    assert (dsn["user"], dsn["password"], dsn["host"], dsn["port"], dsn["dbname"]) == (
        "litellm",
        PASSWORD,
        "ai-postgres",
        "5432",
        "litellmdb",
    )
