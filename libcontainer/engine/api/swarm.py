"""Swarm mode and plugins, which runner daemon does not have: it answers as dockerd does on a
node outside any swarm (503 "not a swarm manager" / "not part of a swarm") and with no
plugins installed, so clients that probe or clean up (`docker info`, docker-py's
leave_swarm(force=True), `docker plugin ls`) work; joining or making a swarm, or installing a
plugin, is refused with a 503 that says so."""
from __future__ import annotations

from ..errors import NotFound, Unavailable
from .base import jresp

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               "to connect this node to swarm and try again.")
NO_SWARM = "runner daemon does not implement swarm mode"


async def not_manager(request):
    raise Unavailable(NOT_MANAGER)


async def leave(request):
    raise Unavailable("This node is not part of a swarm")


async def no_swarm(request):
    raise Unavailable(NO_SWARM)


async def plugins(request):
    return jresp([])


async def plugin(request):
    raise NotFound(f'plugin "{request.match_info["name"]}" not found')


async def no_plugins(request):
    raise Unavailable("runner daemon does not implement plugins")


_SCOPED = ["/swarm", "/swarm/unlockkey", "/nodes", "/nodes/{id}", "/services", "/services/{id}",
           "/services/{id}/logs", "/tasks", "/tasks/{id}", "/tasks/{id}/logs", "/secrets",
           "/secrets/{id}", "/configs", "/configs/{id}"]
ROUTES = ([("GET", p, not_manager) for p in _SCOPED] +
          [("DELETE", p, not_manager) for p in ("/nodes/{id}", "/services/{id}", "/secrets/{id}",
                                                "/configs/{id}")] +
          [("POST", p, not_manager) for p in ("/swarm/update", "/swarm/unlock", "/nodes/{id}/update",
                                              "/services/create", "/services/{id}/update",
                                              "/secrets/create", "/secrets/{id}/update",
                                              "/configs/create", "/configs/{id}/update")] +
          [("POST", "/swarm/leave", leave), ("POST", "/swarm/init", no_swarm),
           ("POST", "/swarm/join", no_swarm),
           ("GET", "/plugins", plugins), ("GET", "/plugins/{name:.+}/json", plugin),
           ("DELETE", "/plugins/{name:.+}", plugin),
           ("POST", "/plugins/{name:.+}/{verb:(enable|disable|set|upgrade|push)}", plugin),
           ("GET", "/plugins/privileges", no_plugins), ("POST", "/plugins/pull", no_plugins),
           ("POST", "/plugins/create", no_plugins)])
