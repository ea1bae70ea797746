"""Run by test_litellm_keys_real.py in the pinned LiteLLM's venv (litellm_venv.sh): LiteLLM's own
answers, as JSON on stdout, for what litellm-sim reimplements and the real proxy cannot show here
without a database.

stdin: {"generate": [request bodies], "durations": [...], "moments": [ISO timestamps]}
stdout: {"generate": [{"status", "body"}], "duration_in_seconds": [...], "budget_duration_error": [...],
         "next_reset": [... for each duration, for each moment], "fields": {model: [field names]}}

/key/generate runs LiteLLM's own handler (generate_key_fn) with three stand-ins for the database it
cannot have: a Prisma client whose insert_data hands back the new row, an alias uniqueness check that
finds nothing, and handle_exception_on_proxy without its first step (which imports the Prisma client
this venv lacks; the rest is LiteLLM's). Everything else, checks, their order, messages, response
model, is the pinned code.
"""

import asyncio
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime, time
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import AsyncMock, MagicMock

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
logging.disable(logging.CRITICAL)

from fastapi import HTTPException  # noqa: E402
from litellm.litellm_core_utils.duration_parser import (  # noqa: E402
    duration_in_seconds,
    get_next_standardized_reset_time,
)
from litellm.proxy import proxy_server  # noqa: E402
from litellm.proxy._types import (  # noqa: E402
    GenerateKeyRequest,
    GenerateKeyResponse,
    LiteLLM_DeletedVerificationToken,
    LiteLLM_VerificationToken,
    LitellmUserRoles,
    ProxyException,
    UserAPIKeyAuth,
)
from litellm.proxy.common_utils.openai_error_payload import error_status_code, openai_shaped_proxy_exception  # noqa: E402
from litellm.proxy.common_utils.timezone_utils import budget_duration_error  # noqa: E402
from litellm.proxy.management_endpoints import key_management_endpoints as endpoints  # noqa: E402

request = json.load(sys.stdin)
CREATED = datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)


class Row(SimpleNamespace):
    def model_dump(self):
        return dict(self.__dict__)


async def insert_data(data, table_name):
    # The row Prisma would hand back for a new key: its hash and the database's timestamps.
    return Row(
        token=endpoints.hash_token(data["token"]), litellm_budget_table=None, created_at=CREATED, updated_at=CREATED
    )


def handle_exception_on_proxy(e, litellm_call_id=None):
    # LiteLLM's own, minus its first step, which imports the Prisma client this venv lacks.
    if isinstance(e, ProxyException):
        return e
    if isinstance(e, HTTPException):
        return openai_shaped_proxy_exception(e, str(e.detail), e.status_code)
    return openai_shaped_proxy_exception(e, str(e), error_status_code(e, 500))


prisma = MagicMock()
prisma.insert_data = insert_data
proxy_server.prisma_client = prisma
endpoints._enforce_unique_key_alias = AsyncMock(return_value=None)  # a database query: nothing is taken here
endpoints.handle_exception_on_proxy = handle_exception_on_proxy
master = UserAPIKeyAuth(
    user_role=LitellmUserRoles.PROXY_ADMIN, api_key="litellm_proxy_master_key", user_id="default_user_id"
)


async def generate(body):
    try:
        response = await endpoints.generate_key_fn(
            data=GenerateKeyRequest(**body), user_api_key_dict=master, litellm_changed_by=None
        )
    except ProxyException as exc:
        return {"status": int(exc.code), "body": {"error": exc.to_dict()}}
    return {"status": 200, "body": response.model_dump(mode="json")}


def attempt(function, *args):
    try:
        value = function(*args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"value": value.isoformat() if isinstance(value, datetime) else value}


def prisma_fields(schema: str, model: str) -> list[str]:
    body = re.search(r"^model " + model + r" \{\n(.*?)^\}", schema, re.S | re.M).group(1)
    names = []
    for line in body.splitlines():
        line = line.strip()
        if line and not line.startswith(("//", "@@")):
            names.append(line.split()[0])
    return names


schema = (Path(endpoints.__file__).parents[1] / "schema.prisma").read_text()
reset_cases = [(duration, moment) for duration in request["durations"] for moment in request["moments"]]
out = {
    "generate": [asyncio.run(generate(body)) for body in request["generate"]],
    "duration_in_seconds": [attempt(duration_in_seconds, d) for d in request["durations"] if "mo" not in d],
    "budget_duration_error": [attempt(budget_duration_error, d) for d in request["durations"]],
    "next_reset": [
        attempt(lambda d, m: get_next_standardized_reset_time(d, datetime.fromisoformat(m), "UTC", time(0, 0)), d, m)
        for d, m in reset_cases
    ],
    "fields": {
        "GenerateKeyResponse": list(GenerateKeyResponse.model_fields),
        "LiteLLM_VerificationToken": list(LiteLLM_VerificationToken.model_fields),
        "LiteLLM_DeletedVerificationToken": list(LiteLLM_DeletedVerificationToken.model_fields),
        "UserAPIKeyAuth": list(UserAPIKeyAuth.model_fields),
        "prisma:LiteLLM_VerificationToken": prisma_fields(schema, "LiteLLM_VerificationToken"),
        "prisma:LiteLLM_BudgetTable": prisma_fields(schema, "LiteLLM_BudgetTable"),
        "prisma:LiteLLM_DeletedVerificationToken": prisma_fields(schema, "LiteLLM_DeletedVerificationToken"),
    },
}
print(json.dumps(out))
