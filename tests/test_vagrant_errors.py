"""A failed vagrant command says its cause, the log's error rather than its last lines, and keeps the log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.providers import vagrant
from chaoslab.lab.settings import LabSettings

PARALLEL_FAILURE = """Bringing machine 'haproxy-1' up with 'libvirt' provider...
==> haproxy-1: Creating shared folders metadata...
==> haproxy-1: Progress: 90%
An error occurred while executing multiple actions in parallel.
Any errors that occurred are shown below.

An unexpected error occurred when executing the action on the
'haproxy-1' machine. Please report this as a bug:

undefined method `each' for nil:NilClass

/usr/share/rubygems-integration/all/gems/vagrant-libvirt-0.11.2/lib/vagrant-libvirt/action/create_domain.rb:197:in `call'
""" + "/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/lib/vagrant/action/warden.rb:48:in `call'\n" * 15


@pytest.mark.parametrize("log, cause", [
    (PARALLEL_FAILURE, "haproxy-1: undefined method `each' for nil:NilClass"),
    ("/usr/lib/fog/define_domain.rb:6:in `define_domain_xml': Call to virDomainDefineXML failed: no domaintype=kvm "
     "(Libvirt::DefinitionError)\n\tfrom /usr/x.rb:3:in `foo'\n", "Call to virDomainDefineXML failed: no domaintype=kvm "
                                                                  "(Libvirt::DefinitionError)"),
    ("The box 'chaoslab/debian-12' could not be found or\ncould not be accessed in the remote catalog.\n",
     "The box 'chaoslab/debian-12' could not be found or could not be accessed in the remote catalog."),
    ("", "vagrant printed nothing"),
])
def test_the_cause_is_the_error_not_the_backtrace(log: str, cause: str):
    assert vagrant.vagrant_error(log) == cause


def test_a_failed_vagrant_command_keeps_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(vagrant, "FAILED_LOG_DIR", tmp_path / "kept")
    provider = Lab(LabSettings(provider="vagrant", prefix="ctvmlog")).provider
    log = provider.host.data_dir / "vagrant.log"

    def failing_up(machines: vagrant.NamespacedVagrant) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(PARALLEL_FAILURE)
        raise subprocess.CalledProcessError(1, ["vagrant", "up"])

    try:
        with pytest.raises(ChaoslabError) as failure:
            provider.call_vagrant("up", failing_up)
    finally:
        provider.host.stop()
    [kept] = (tmp_path / "kept").iterdir()
    assert str(failure.value) == f"vagrant up failed: haproxy-1: undefined method `each' for nil:NilClass (the whole log: {kept})"
    assert kept.read_text() == PARALLEL_FAILURE and not log.exists()
