# make demo | make test | make bench — each sets up what it needs (as root, on Debian 12).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
RUNNER := $(VENV)/bin/runner
BUNDLE := build/bundle
APT_PACKAGES := gcc make libc6-dev libseccomp-dev busybox-static python3-dev python3-venv uidmap \
	iproute2 procps strace nftables
# runc: tests compare with it side by side (test_state_fields.py); docker.io: its own dockerd
# drives runc and the runner side by side (test_docker.py); docker-compose: a client of the
# daemon (test_daemon_scenarios.py)
ACCEPT_PACKAGES := podman containerd containernetworking-plugins runc docker.io docker-compose
# the image tests build, copy and serve images with the real tools (tests/integration/test_images*.py);
# buildah: the ship tests' peer (buildah push) and the build tests' (buildah bud); debootstrap:
# the Debian base of the build comparison
IMAGE_PACKAGES := skopeo umoci docker-registry buildah debootstrap

.PHONY: all deps accept-deps compile venv rootfs demo test test-warm unit bench bench-grading soak clean

all: venv rootfs

# apt only when something is missing: a second `make test` costs nothing here. Services the
# packages bring (docker.io's dockerd, containerd) must not start: a system dockerd would make
# docker0 and iptables rules in the machine's own network namespace. A policy-rc.d saying 101
# ("not allowed") stops invoke-rc.d; one the machine already has is left as it is.
define apt_install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		made_policy=; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; rc=$$?; \
		if [ -n "$$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$rc; \
	fi
endef

deps:
	$(call apt_install_missing,$(APT_PACKAGES))

# the engines of the "real clients" acceptance tests (tests/integration/test_engines.py)
accept-deps:
	$(call apt_install_missing,$(ACCEPT_PACKAGES) $(IMAGE_PACKAGES))

# deps is order-only (after the |): being phony, as a normal prerequisite it would force a
# reinstall on every make
$(VENV)/.built: pyproject.toml setup.py bin/runner bin/runner-cni bin/boot.py $(wildcard csrc/*.c csrc/*.h) csrc/build.py | deps
	test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi
	$(PY) -m pip install -q --config-settings editable_mode=compat -e '.[test]'
	touch $@

# Byte-compile ahead: with PYTHONDONTWRITEBYTECODE set, every start would compile again.
# .venv/bin/runner is what `pip install .` installs: the -I -S launcher built from csrc/launcher.c
compile: $(VENV)/.built
	@$(PY) -m compileall -q libcontainer runner

venv: compile $(VENV)/.built

# The embedded default bundle: a busybox rootfs from Debian's busybox-static.
$(BUNDLE)/rootfs/bin/busybox: spec/rootfs.sh | deps
	bash spec/rootfs.sh $(BUNDLE)/rootfs

rootfs: $(BUNDLE)/rootfs/bin/busybox

demo: venv rootfs
	cp spec/examples/demo.json $(BUNDLE)/config.json
	$(RUNNER) run --bundle $(BUNDLE) demo-$$$$

unit: venv
	$(PY) -m pytest -q tests/unit

test: venv rootfs accept-deps
	$(PY) -m pytest -q -p no:cacheprovider tests

# The runtime's conformance files again, every `runner` the installed launcher and every
# test's state root served by a `runner warm-server` (runner/warm.py): the same tests pass
# with and without it (tests/conftest.py, RUNNER_TEST_WARM).
WARM_FILES := lifecycle state_fields hooks hook_state_env run_basic cli_run crash_faults \
	runtime_log exec bad_input cgroups create_without_process peer_behaviour
test-warm: venv rootfs accept-deps
	RUNNER_TEST_WARM=1 $(PY) -m pytest -q -p no:cacheprovider \
		$(patsubst %,tests/integration/test_%.py,$(WARM_FILES)) tests/integration/test_engines.py \
		tests/integration/test_docker.py

# issue 21's population row is a thousand containers (~4 min here, every runtime)
BENCH_CONTAINERS ?= 1000
bench: venv rootfs
	$(PY) tests/bench/bench.py
	$(PY) tests/bench/bench_scale.py --containers $(BENCH_CONTAINERS) --api
	$(PY) tests/bench/bench_network.py
	$(PY) tests/bench/bench_images.py
	$(PY) tests/bench/bench_sandbox.py
	$(PY) tests/bench/bench_build.py
	$(PY) tests/bench/bench_docker.py
	$(PY) tests/bench/bench_daemon.py
	$(PY) tests/bench/bench_systemd.py
	$(PY) tests/bench/bench_grading.py --peer-submissions $(GRADING_PEERS)

# the grading workload (libcontainer.sandbox vs epicbox, docker run, podman run, bwrap): the
# sandbox grades 200 submissions, each peer the first GRADING_PEERS (all 200: ~40 min here)
GRADING_PEERS ?= 40
bench-grading: venv rootfs
	$(PY) tests/bench/bench_grading.py --peer-submissions $(GRADING_PEERS)

# the embedding process does not leak: 1000 containers through the library, then 10 000
# sandboxed runs through one Sandbox (SOAK_RUNS sets both counts)
soak: venv rootfs
	$(PY) tests/soak/soak.py
	$(PY) tests/soak/soak_sandbox.py

clean:
	rm -rf build $(VENV) *.egg-info libcontainer/_shim*.so libcontainer/_seccomp*.so
