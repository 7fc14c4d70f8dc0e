"""Service credentials for tests that call a service's state-changing routes directly, as the
console does (``orderflow.runtime.service_auth``): signed with the key the stack gave its
services, naming the operator the test plays.

    async with httpx.AsyncClient(base_url=url, auth=operator(pipeline, "review",
                                                             "li.na", "reviewer")) as api:
        await api.post(f"/api/orders/{order_id}/approve", json={"comment": "ok"})
"""

from __future__ import annotations

from typing import Protocol

from orderflow.devstack.stack import Stack
from orderflow.runtime.service_auth import KEY_VARIABLE, ServiceCredentials, secret_file


class _HasStack(Protocol):
    @property
    def stack(self) -> Stack: ...


def service_key(where: Stack | _HasStack) -> str:
    """The key the stack's services verify with (``Stack.service_env``): its ``extra_env``'s,
    else the one generated into its folder."""
    stack = where if isinstance(where, Stack) else where.stack
    return stack.extra_env.get(KEY_VARIABLE) or secret_file(stack.root / "service-key")


def operator(where: Stack | _HasStack, service: str, actor: str = "test-operator",
             role: str = "admin") -> ServiceCredentials:
    """httpx ``auth`` that signs every write to ``service`` as ``actor`` with ``role``."""
    return ServiceCredentials(service_key(where), actor=actor, role=role, audience=service)
