"""Schema fuzz: Schemathesis reads the OpenAPI schema the live server publishes, generates requests
from it (valid and invalid ones, random bytes as images, wrong parameter types) and checks that
no answer is a 5xx and that every answer is one the schema documents (status, content type, body).
Bounded: a fixed number of examples per operation, derandomized so a failure reproduces."""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode, checks  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

EXAMPLES = {"POST /v1/segment": 40}          # per mode; the endpoint with a body gets the most
DEFAULT_EXAMPLES = 10

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,         # every status the server answers is in the schema
    checks.content_type_conformance,        # with a content type the schema lists for it
    checks.response_schema_conformance,     # and a body that validates against the schema
    checks.response_headers_conformance,
    checks.negative_data_rejection,         # requests that break the schema are refused with a 4xx
]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_served_openapi_fuzz_finds_no_5xx_and_no_undocumented_answer(live_server, mode):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    generation_mode = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        statuses = seen.setdefault(label, set())

        @settings(max_examples=EXAMPLES.get(label, DEFAULT_EXAMPLES), deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode))
        def fuzz(case):
            response = case.call(base_url=live_server.url, timeout=30)
            statuses.add(response.status_code)
            case.validate_response(response, checks=CHECKS)

        try:
            fuzz()
        except Unsatisfiable:
            # negative mode on an operation with no parameter and no body: there is nothing to break
            assert mode == "negative" and not statuses, label
    assert {"POST /v1/segment", "GET /v1/model", "GET /healthz", "GET /metrics"} <= set(seen)
    assert all(s < 500 for statuses in seen.values() for s in statuses), seen
    # the fuzz reached the refusals, not only one kind of answer
    expected = {400, 415} if mode == "positive" else {422}
    assert expected <= seen["POST /v1/segment"], seen
