"""`POST /api/v1/tasks/<path>` for every contract that has a `submit_path`.

The route, its request body schema in OpenAPI and the registry record all follow from the
contract: the body *is* the contract, validated by msgspec at the edge. The one rule the
contract cannot hold is who may name another user: a `user_id` other than the caller's
needs an admin key, and an absent one means the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.params import HeaderParameter

from service.api.openapi_responses import OptionalBodyOperation, raises
from service.api.problems import ProblemException
from service.api.task_schemas import Submitted
from service.api.tasks import submit
from service.core import idempotency
from service.core.contracts import TaskContract
from service.core.users import User


def owned_by_caller(task: TaskContract, user: User) -> TaskContract:
    """`task` with `user_id` set to the caller's; 403 if a plain key names someone else."""
    if "user_id" not in task.__struct_fields__:
        return task
    requested = getattr(task, "user_id", None)
    if requested is not None and requested != user.id and not user.is_admin:
        refused = ProblemException(status=403, detail="user_id needs an admin API key")
        refused.extra = [{"message": "needs an admin API key", "key": "user_id", "source": "body"}]
        raise refused
    return msgspec.structs.replace(task, user_id=requested or user.id)


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=idempotency.MAX_KEY_LENGTH,
        description="Repeat a submit safely: the same key and body within 24 h answer as the "
        "first time did; the same key with another body is a 422.",
    ),
]
EXISTING = ResponseSpec(
    Submitted,
    description="An identical task is still unfinished: its id, with status `existing`.",
    generate_examples=False,
)


def _takes_empty_body(contract: type[TaskContract]) -> bool:
    return not any(field.required for field in msgspec.structs.fields(contract))


def submit_route(contract: type[TaskContract]) -> HTTPRouteHandler:
    """The submit route of one contract; 202 when new, 200 with the id of an unfinished twin."""
    if contract.submit_path is None:
        raise ValueError(f"{contract.name} has no submit_path")

    operation_class: type[Operation] = Operation
    if _takes_empty_body(contract):
        operation_class = OptionalBodyOperation

        async def handler(
            request: Request[User, int, State], data: Any = None, idempotency_key: Any = None
        ) -> Any:
            task = data if data is not None else contract()
            return await submit(request, owned_by_caller(task, request.user))

        body: Any = contract | None
    else:

        async def handler(  # type: ignore[misc]
            request: Request[User, int, State], data: Any, idempotency_key: Any = None
        ) -> Any:
            return await submit(request, owned_by_caller(data, request.user))

        body = contract
    # Litestar reads the body type from the annotation, so each route gets its contract's.
    handler.__annotations__ = {
        "request": Request[User, int, State],
        "data": body,
        "idempotency_key": IdempotencyKey,
        "return": Response[Submitted],
    }
    handler.__name__ = handler.__qualname__ = f"submit_{contract.name}"
    handler.__doc__ = f"Queue `{contract.name}`: {(contract.__doc__ or '').strip()}"
    if operation_class is OptionalBodyOperation:
        handler.__doc__ += " The body may be left out: no body means `{}`, every default."
    return post(
        f"/tasks/{contract.submit_path}",
        status_code=202,
        summary=contract.summary or f"Submit {contract.name}",
        tags=["tasks"],
        operation_class=operation_class,
        responses={200: EXISTING},
        # 422: an Idempotency-Key reused with another body, or a rule across fields;
        # 429: the per-key submit limit; 503: the broker did not take the task.
        opt=raises(422, 429, 503, *((403,) if "user_id" in contract.__struct_fields__ else ())),
    )(handler)


def submit_routes(contracts: Iterable[type[TaskContract]]) -> list[HTTPRouteHandler]:
    """A submit route for every contract the API accepts over HTTP."""
    return [submit_route(contract) for contract in contracts if contract.submit_path is not None]
