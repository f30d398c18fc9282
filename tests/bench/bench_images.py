"""`make bench`, images: pull + unpack of a multi-layer image from docker-registry on
127.0.0.1, `runner pull` side by side with `skopeo copy` + `umoci unpack` of the same image
(same run, interleaved, ratio of medians); "image in store → container ran" (`runner
bundle` + `runner run` of /bin/true + `runner bundle --remove`) with overlay vs vfs; and push:
`runner push` of the image from the store to an empty docker-registry, side by side with
`skopeo copy` of the same image from an OCI layout with uncompressed layers (so both compress
every layer, as the store keeps layers unpacked) to another empty one, and, for reference,
`skopeo copy` from a layout of gzip blobs (no compression: the blobs as they are).

    .venv/bin/python tests/bench/bench_images.py [--runs N] [--layers N] [--layer-mb N]

The image: the busybox rootfs, then N layers of files with random content (incompressible,
so gzip costs what it costs on real binaries)."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import imagekit as kit  # noqa: E402

RUNNER = [str(REPO / ".venv" / "bin" / "runner")]


def build(work: str, layers: int, layer_mb: int) -> str:
    layout = os.path.join(work, "layout")
    b = os.path.join(work, "b")
    kit.sh("umoci", "init", "--layout", layout)
    kit.sh("umoci", "new", "--image", f"{layout}:bench")
    kit.sh("umoci", "unpack", "--image", f"{layout}:bench", b)
    kit.sh("cp", "-a", kit.ROOTFS + "/.", f"{b}/rootfs")
    kit.sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:bench", b)
    for i in range(layers):
        d = f"{b}/rootfs/data/l{i}"
        os.makedirs(d)
        for j in range(layer_mb * 8):  # 128 KiB files
            with open(f"{d}/f{j}", "wb") as f:
                f.write(os.urandom(128 << 10))
        kit.sh("umoci", "repack", "--refresh-bundle", "--image", f"{layout}:bench", b)
    kit.sh("umoci", "config", "--image", f"{layout}:bench", "--config.cmd", "true")
    shutil.rmtree(b)
    return layout


def timed(cmd: list, env=None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{cmd} failed: {r.stderr}")
    return time.perf_counter() - t


def median_ms(xs: list) -> str:
    return f"{statistics.median(xs) * 1000:8.1f} ms (min {min(xs) * 1000:.1f})"


def bench_push(work: str, store: str, image: str, layout: str, runs: int) -> None:
    """Each push goes to an empty registry (started fresh, not timed), so that neither tool
    finds a blob there or mounts one; the store's memory of pushed blobs is cleared too."""
    plain = os.path.join(work, "plain-layout")
    timed(RUNNER + ["push", "--storage", store, "--compression-format", "none", image, f"oci:{plain}:x"])
    ours, theirs, passthrough = [], [], []
    for i in range(runs):
        for kind, xs in (("ours", ours), ("skopeo", theirs), ("skopeo-gzip", passthrough)):
            reg = kit.Registry(os.path.join(work, f"push-reg-{kind}-{i}"))
            try:
                dest = f"docker://{reg.addr}/bench/pushed:1"
                if kind == "ours":
                    for d in Path(store, "layers").glob("*/blobs.json"):
                        d.unlink()
                    xs.append(timed(RUNNER + ["push", "--quiet", "--storage", store,
                                              "--tls-verify=false", image, dest]))
                elif kind == "skopeo":
                    xs.append(timed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                     f"oci:{plain}:x", dest]))
                else:
                    xs.append(timed(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                     f"oci:{layout}:bench", dest]))
            finally:
                reg.stop()
                shutil.rmtree(reg.dir, ignore_errors=True)
    print("push to an empty docker-registry (compress + upload every layer):")
    print(f"  runner push (from the store)            {median_ms(ours)}")
    print(f"  skopeo copy (uncompressed OCI layout)   {median_ms(theirs)}")
    print(f"  ratio runner / skopeo                   {statistics.median(ours) / statistics.median(theirs):8.2f}x")
    print(f"  skopeo copy of gzip blobs as they are   {median_ms(passthrough)}  (no compression: reference)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "5")))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--layer-mb", type=int, default=4)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_images: needs root", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="bench-images-")
    os.chmod(work, 0o755)
    reg = None
    # skopeo as root keeps a blob-info cache there (no flag moves it): gone after, if ours
    made_containers_dir = not os.path.exists(kit.CONTAINERS_DIR)
    try:
        layout = build(work, args.layers, args.layer_mb)
        reg = kit.Registry(os.path.join(work, "registry"))
        reg.push(f"oci:{layout}:bench", "bench/img:1")
        src = f"docker://{reg.addr}/bench/img:1"
        print(f"image: busybox + {args.layers} layers of {args.layer_mb} MiB (random), "
              f"from docker-registry on {reg.addr}; {args.runs} runs each, interleaved")
        ours, theirs = [], []
        for i in range(args.runs):
            store = os.path.join(work, f"store-{i}")
            ours.append(timed(RUNNER + ["pull", "--quiet", "--storage", store, "--tls-verify=false", src]))
            oci = os.path.join(work, f"oci-{i}")
            t = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false", src, f"oci:{oci}:x"])
            t += timed(["umoci", "unpack", "--image", f"{oci}:x", os.path.join(work, f"unpacked-{i}")])
            theirs.append(t)
            shutil.rmtree(oci)
            shutil.rmtree(os.path.join(work, f"unpacked-{i}"))
            if i:
                shutil.rmtree(store)
        m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
        print(f"  runner pull (fetch, verify, unpack)     {median_ms(ours)}")
        print(f"  skopeo copy + umoci unpack              {median_ms(theirs)}")
        print(f"  ratio runner / (skopeo + umoci)         {m_ours / m_theirs:8.2f}x")

        store = os.path.join(work, "store-0")
        state = os.path.join(work, "state")
        results = {"overlay": [], "vfs": []}
        for _ in range(args.runs):
            for driver in results:
                bundle = os.path.join(work, f"bundle-{driver}")
                t = time.perf_counter()
                timed(RUNNER + ["bundle", "--storage", store, "--driver", driver,
                                f"{reg.addr}/bench/img:1", bundle])
                timed(RUNNER + ["--root", state, "run", "--bundle", bundle, "b-" + uuid.uuid4().hex[:10]])
                results[driver].append(time.perf_counter() - t)
                timed(RUNNER + ["bundle", "--storage", store, "--remove", bundle])
        print("image in store → container ran (bundle + run /bin/true):")
        for driver, xs in results.items():
            print(f"  {driver:<8}                                {median_ms(xs)}")
        print(f"  ratio vfs / overlay                     "
              f"{statistics.median(results['vfs']) / statistics.median(results['overlay']):8.2f}x")
        bench_push(work, store, f"{reg.addr}/bench/img:1", layout, args.runs)
    finally:
        if reg:
            reg.stop()
        subprocess.run(["umount", "-R", os.path.join(work, "bundle-overlay", "rootfs")],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        if made_containers_dir:
            shutil.rmtree(kit.CONTAINERS_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
