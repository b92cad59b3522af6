"""The PVE simulator's wire behaviour (ENDPOINTS.md §1-§7), checked with plain HTTPS requests.

The adapter tests rely on these shapes; here they are pinned down directly so a simulator change
that drifts from PVE is caught where it happens.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.simulators.pvesim import RESTRICTED_TOKEN_ID, ROOT_PASSWORD, TOKEN_ID, SimConfig, Simulator
from tests.support.paths import REPO

pytestmark = pytest.mark.e2e


class Client:
    def __init__(self, sim: Simulator) -> None:
        self.base = f"https://127.0.0.1:{sim.port}"
        self.http = requests.Session()
        self.ca_file = str(sim.ca_file)

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.raw(method, "/api2/json" + path, **kw)

    def raw(self, method: str, path: str, **kw: Any) -> requests.Response:
        # verify per request: a session-level value loses against $REQUESTS_CA_BUNDLE
        return self.http.request(method, self.base + path, timeout=10, verify=self.ca_file, **kw)

    def login(self, password: str = ROOT_PASSWORD) -> dict[str, Any]:
        response = self.call("POST", "/access/ticket", data={"username": "root@pam", "password": password})
        assert response.status_code == 200, response.reason
        data = response.json()["data"]
        self.http.cookies.set("PVEAuthCookie", data["ticket"])
        self.http.headers["CSRFPreventionToken"] = data["CSRFPreventionToken"]
        return data


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.0), ssh=False) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Client:
    client = Client(sim)
    client.login()
    return client


def test_auth_layer_401s_have_the_reason_in_the_status_line_and_an_empty_body(sim: Simulator) -> None:
    anonymous = Client(sim)
    response = anonymous.call("GET", "/cluster/resources")
    assert (response.status_code, response.reason, response.content) == (401, "No ticket", b"")
    anonymous.http.cookies.set("PVEAuthCookie", "PVE:root@pam:00000000::forged")
    assert anonymous.call("GET", "/nodes").reason == "Authentication failed!"
    token = {"Authorization": f"PVEAPIToken=root@pam!{TOKEN_ID}=wrong"}
    assert Client(sim).call("GET", "/nodes", headers=token).status_code == 401


def test_login_failure_and_ticket_renewal(sim: Simulator) -> None:
    client = Client(sim)
    refused = client.call("POST", "/access/ticket", data={"username": "root@pam", "password": "nope"})
    assert (refused.status_code, refused.json()) == (
        401,
        {"data": None, "message": "authentication failure\n"},
    )
    first = client.login()
    assert first["ticket"].startswith("PVE:root@pam:") and first["clustername"] == "lab"
    renewed = client.login(password=first["ticket"])  # a valid ticket works as the password
    assert renewed["ticket"] != first["ticket"]


def test_csrf_token_is_required_for_writes_with_a_ticket_only(sim: Simulator, client: Client) -> None:
    del client.http.headers["CSRFPreventionToken"]
    response = client.call("POST", "/nodes/pve1/qemu/100/agent/ping")
    assert (response.status_code, response.reason) == (401, "Permission denied - invalid csrf token")
    token = {"Authorization": f"PVEAPIToken=root@pam!{TOKEN_ID}={sim.token_secret}"}
    assert Client(sim).call("POST", "/nodes/pve1/qemu/100/agent/ping", headers=token).json() == {
        "data": {"result": {}}
    }


def test_parameter_verification(client: Client) -> None:
    response = client.call("POST", "/nodes/pve1/qemu/100/snapshot", data={"vmstate": "True", "bogus": "1"})
    assert (response.status_code, response.reason) == (400, "Parameter verification failed.")
    body = response.json()
    assert body["message"] == "Parameter verification failed.\n"
    assert body["errors"] == {
        "snapname": "property is missing and it is not optional",
        "vmstate": "type check ('boolean') failed - got 'True'",
        "bogus": "property is not defined in schema and the schema does not allow additional properties",
    }
    twice = client.call("POST", "/nodes/pve1/qemu/100/snapshot", data=[("snapname", "a"), ("snapname", "b")])
    assert twice.json()["errors"] == {"snapname": "type check ('string') failed - got ARRAY"}
    clash = client.call("POST", "/nodes/pve1/qemu/100/snapshot", data={"snapname": "a", "vmid": "101"})
    assert clash.status_code == 400 and "conflicting values" in clash.reason
    assert client.call("GET", "/cluster/resources", params={"type": "vms"}).json()["errors"] == {
        "type": "value 'vms' does not have a value in the enumeration 'vm, storage, node, sdn'"
    }


def test_unknown_paths_methods_nodes_and_offline_nodes(sim: Simulator, client: Client) -> None:
    assert (
        client.call("GET", "/nodes/pve1/nothing").reason == "Method 'GET /nodes/pve1/nothing' not implemented"
    )
    assert client.call("DELETE", "/version").status_code == 501
    assert client.call("GET", "/nodes/pve9/status").reason == "no such cluster node 'pve9'"
    sim.cluster.nodes["pve3"].online = False
    assert client.call("GET", "/nodes/pve3/status").status_code == 595
    assert client.call("GET", "/nodes/pve1/qemu/103/status/current").json()["message"] == (
        "Configuration file 'nodes/pve1/qemu-server/103.conf' does not exist\n"
    )


def test_privilege_separated_token_without_acls(sim: Simulator) -> None:
    secret = sim.auth.accounts["root@pam"].tokens[RESTRICTED_TOKEN_ID][0]
    token = {"Authorization": f"PVEAPIToken=root@pam!{RESTRICTED_TOKEN_ID}={secret}"}
    restricted = Client(sim)
    full_token = {"Authorization": f"PVEAPIToken=root@pam!{TOKEN_ID}={sim.token_secret}"}
    unlock = restricted.call(
        "PUT", "/nodes/pve1/qemu/100/config", headers=full_token, data={"delete": "lock", "skiplock": "1"}
    )
    assert unlock.json()["errors"] == {"skiplock": "Only root may use this option."}
    assert restricted.call("GET", "/cluster/resources", headers=token).json() == {"data": []}
    denied = restricted.call("GET", "/nodes/pve1/qemu/100/status/current", headers=token)
    assert (denied.status_code, denied.reason) == (403, "Permission check failed (/vms/100, Sys.Audit)")
    assert (
        restricted.call(
            "POST", "/access/ticket", headers=token, data={"username": "root@pam", "password": "x"}
        ).status_code
        == 401
    )


def test_task_lifecycle_and_log(sim: Simulator, client: Client) -> None:
    upid = client.call(
        "POST", "/nodes/pve1/qemu/100/snapshot", data={"snapname": "s1", "vmstate": "1"}
    ).json()["data"]
    assert upid.startswith("UPID:pve1:") and upid.endswith(":qmsnapshot:100:root@pam:")
    status = client.call("GET", f"/nodes/pve1/tasks/{upid}/status").json()["data"]
    assert (status["status"], status["exitstatus"]) == ("stopped", "OK")
    log = client.call("GET", f"/nodes/pve1/tasks/{upid}/log", params={"limit": 1, "start": 1}).json()
    assert log == {"data": [{"n": 2, "t": "TASK OK"}], "total": 2}
    assert client.call("GET", "/nodes/pve2/tasks/UPID:bad/status").json()["errors"] == {
        "upid": "unable to parse worker upid"
    }
    again = client.call("POST", "/nodes/pve1/qemu/100/snapshot", data={"snapname": "s1"}).json()["data"]
    failed = client.call("GET", f"/nodes/pve1/tasks/{again}/status").json()["data"]
    assert failed["exitstatus"] == "snapshot name 's1' already used"  # HTTP said 200


def test_snapshot_list_has_the_current_pseudo_entry(client: Client) -> None:
    assert client.call("GET", "/nodes/pve1/qemu/100/snapshot").json()["data"][-1]["name"] == "current"
    client.call(
        "POST", "/nodes/pve1/qemu/100/snapshot", data={"snapname": "s1", "description": "d", "vmstate": "1"}
    )
    entries = client.call("GET", "/nodes/pve1/qemu/100/snapshot").json()["data"]
    assert entries[0]["name"] == "s1" and entries[0]["vmstate"] == 1 and "snapstate" not in entries[0]
    assert entries[1] == {
        **entries[1],
        "name": "current",
        "description": "You are here!",
        "parent": "s1",
        "running": 1,
    }
    reserved = client.call("POST", "/nodes/pve1/qemu/100/snapshot", data={"snapname": "current"})
    assert (reserved.status_code, reserved.reason) == (
        500,
        "unable to use snapshot name 'current' (reserved name)",
    )


def test_guest_agent_answers(sim: Simulator, client: Client) -> None:
    assert client.call("POST", "/nodes/pve2/qemu/104/agent/ping").reason == "No QEMU guest agent configured"
    sim.cluster.guests[104].agent = True
    assert client.call("POST", "/nodes/pve2/qemu/104/agent/ping").reason == "VM 104 is not running"
    sim.inject("agent_not_ready", vmid=100, seconds=60)
    assert client.call("POST", "/nodes/pve1/qemu/100/agent/ping").reason == "QEMU guest agent is not running"
    pid = client.call("POST", "/nodes/pve3/qemu/103/agent/exec", data={"command": ["echo", "a b"]}).json()[
        "data"
    ]["pid"]
    done = client.call("GET", "/nodes/pve3/qemu/103/agent/exec-status", params={"pid": pid}).json()["data"]
    assert done == {"exited": 1, "exitcode": 0, "out-data": "a b\n", "err-data": ""}
    forgotten = client.call("GET", "/nodes/pve3/qemu/103/agent/exec-status", params={"pid": pid})
    assert (forgotten.status_code, forgotten.reason) == (500, "Agent error: Invalid parameter 'pid'")
    assert client.call("GET", "/nodes/pve3/qemu/103/agent/exec-status").json()["errors"] == {
        "pid": "property is missing and it is not optional"
    }


def test_synchronous_lock_error_on_migrate(sim: Simulator, client: Client) -> None:
    sim.inject("stale_lock", vmid=103, lock="backup")
    response = client.call("POST", "/nodes/pve3/qemu/103/migrate", data={"target": "pve1", "online": "1"})
    assert (response.status_code, response.reason) == (500, "VM is locked (backup)")
    assert (
        client.call("POST", "/nodes/pve3/qemu/103/migrate", data={"target": "pve3"}).reason
        == "target is local node."
    )


def test_control_endpoint(sim: Simulator) -> None:
    control = Client(sim)
    fault = {"kind": "http_error", "status": 503, "message": "down", "path": "^/version$"}
    assert control.raw("POST", "/_sim/faults", json=fault).json() == {"ok": True}
    assert control.call("GET", "/version").status_code == 503
    assert control.raw("POST", "/_sim/faults", json={"kind": "nonsense"}).status_code == 400
    assert control.raw("POST", "/_sim/clock", json={"advance": 7201}).status_code == 200
    state = control.raw("GET", "/_sim/state").json()
    assert set(state) == {"nodes", "guests", "events", "backups"} and state["nodes"]["pve1"]["online"] is True
    assert state["backups"] == {"local": [], "local-zfs": [], "backup-nfs": []}


def test_standalone_module_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.simulators.pvesim",
            "--port",
            "0",
            "--workdir",
            str(tmp_path),
            "--task-duration",
            "0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        response = requests.post(
            f"https://127.0.0.1:{info['port']}/api2/json/access/ticket",
            timeout=10,
            data={"username": info["user"], "password": info["password"]},
            verify=info["ca_file"],
        )
        assert response.status_code == 200
        assert Path(info["known_hosts"]).read_text().count("ssh-ed25519") == 3
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
