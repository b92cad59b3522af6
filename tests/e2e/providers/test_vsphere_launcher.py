"""The vcsim launcher itself (tests/simulators/vcsim): the behaviour other vSphere tests rely on, checked with
plain pyVmomi so that a launcher regression is not mistaken for an adapter bug."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from tests.simulators.vcsim.launcher import Vcsim, start_or_skip

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim() -> Iterator[Vcsim]:
    sim = start_or_skip("-host", "3", "-vm", "3", "-balance", "-host-version", "DC0_C0_H2=8.0.2:22380479")
    yield sim
    sim.stop()


def connect(sim: Vcsim):
    return SmartConnect(
        host=sim.host,
        port=sim.port,
        user=sim.user,
        pwd=sim.password,
        sslContext=ssl.create_default_context(cafile=str(sim.cert_file)),
    )


@pytest.fixture
def content(sim: Vcsim):
    si = connect(sim)
    yield si.RetrieveContent()
    Disconnect(si)
    sim.clear_faults()


def hosts_by_name(content) -> dict[str, vim.HostSystem]:
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
    return {h.name: h for h in view.view}


def test_only_the_configured_user_logs_in(sim: Vcsim) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd="wrong",
                     sslContext=ssl.create_default_context(cafile=str(sim.cert_file)))  # fmt: skip


def test_per_host_versions_and_the_host_build_endpoint(sim: Vcsim, content) -> None:
    hosts = hosts_by_name(content)
    assert hosts["DC0_C0_H0"].summary.config.product.build == "21930508"
    assert hosts["DC0_C0_H2"].config.product.version == "8.0.2"
    sim.set_host_build("DC0_C0_H1", "7.0.3", "22348816")
    assert hosts["DC0_C0_H1"].summary.config.product.build == "22348816"
    assert hosts["DC0_C0_H0"].summary.config.product.build == "21930508", "product info is per host"
    sim.set_host_build("DC0_C0_H1", "7.0.3", "21930508")


def test_maintenance_mode_changes_reach_wait_for_updates(sim: Vcsim, content) -> None:
    host = hosts_by_name(content)["DC0_C0_H0"]
    PC = vmodl.query.PropertyCollector
    collector = content.propertyCollector.CreatePropertyCollector()
    collector.CreateFilter(
        PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=host)],
            propSet=[PC.PropertySpec(type=vim.HostSystem, pathSet=["runtime.inMaintenanceMode"])],
        ),
        partialUpdates=False,
    )
    first = collector.WaitForUpdatesEx("", PC.WaitOptions(maxWaitSeconds=0))
    threading.Timer(0.3, lambda: host.EnterMaintenanceMode_Task(timeout=0)).start()
    seen = None
    deadline = time.monotonic() + 10
    version = first.version
    while seen is not True and time.monotonic() < deadline:
        update = collector.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=5))
        if update:
            version = update.version
            for change in update.filterSet[0].objectSet[0].changeSet:
                seen = change.val
    collector.DestroyPropertyCollector()
    assert seen is True
    assert len(host.vm) == 0 or all(vm.runtime.powerState != "poweredOn" for vm in host.vm), "evacuated"
    host.ExitMaintenanceMode_Task(timeout=0)


def test_unset_property_fetch_answers_none(content) -> None:
    vm = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True).view[0]
    assert vm.snapshot is None  # stock vcsim panics here and pyVmomi sees RemoteDisconnected
    assert vm.name.startswith("DC0_C0_RP0_VM")


def test_fault_rules_count_skip_and_target(sim: Vcsim, content) -> None:
    vm = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True).view[0]
    sim.add_fault(f"method=PowerOffVM_Task,target={vm.name},fault=TaskInProgress,mode=soap,skip=1,count=1")
    outcomes = []
    for _ in range(3):
        try:
            task = vm.PowerOffVM_Task()
            outcomes.append(str(task.info.state))
        except vim.fault.TaskInProgress as fault:
            outcomes.append(type(fault.task).__name__)
    # let through (skip=1), fired (with its task ref filled in), spent (count=1): really powered off
    # twice, so the last one fails in vcsim itself
    assert outcomes == ["success", "vim.Task", "error"]
    (rule,) = sim.faults()
    assert (rule["seen"], rule["fired"]) == (3, 1)
    vm.PowerOnVM_Task()


def test_dropped_connection_is_a_remote_disconnect(sim: Vcsim, content) -> None:
    sim.add_fault("method=RetrievePropertiesEx,mode=drop,count=1")
    PC = vmodl.query.PropertyCollector
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=content.rootFolder)],
                         propSet=[PC.PropertySpec(type=vim.Folder, pathSet=["name"])])  # fmt: skip
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    assert content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions()).objects


def test_bad_fault_rules_are_rejected(sim: Vcsim) -> None:
    for rule in ("method=X,fault=NoSuchFault", "fault=FileLocked", "method=PowerOnVM_Task,mode=teleport"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            sim.add_fault(rule)
        assert caught.value.code == 400
    assert sim.faults() == []


def test_stats_count_soap_methods(sim: Vcsim, content) -> None:
    sim.reset_stats()
    content.sessionManager.SessionIsActive(content.sessionManager.currentSession.key, sim.user)
    calls = sim.stats()
    assert calls.get("SessionIsActive") == 1
    assert json.dumps(calls)  # plain JSON counters
