"""Build PANTHER's container images from this repository alone: no image registry is needed.

    python deploy/images/build.py [--only kafka,worker] [--public-base] [--json]     (`make images`)

1. `panther-base:bookworm`: Debian bookworm made with `debootstrap --variant=minbase` from Debian's own
   mirror and `docker import`ed. The machine's extra CA certificates (/usr/local/share/ca-certificates:
   a TLS-intercepting egress proxy, a corporate CA) go into this local base only, so that apt, pip and
   Maven inside the builds trust what the host trusts. Cached: rebuilt only when its key changes
   (suite, mirror, packages, the CA files' bytes), which the image carries as a label.
2. The images, each from its Dockerfile with `--build-arg BASE_IMAGE=panther-base:bookworm` (or the
   Dockerfile's public default with `--public-base`, for machines that can pull): Docker's layer cache
   makes a second build of unchanged inputs take seconds.

Prints what it built, how long each took and what each weighs; `--json` prints exactly one object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = "panther-base:bookworm"
SUITE, MIRROR = "bookworm", os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("ca-certificates",)
EXTRA_CAS = Path("/usr/local/share/ca-certificates")
VERSION = "0.1.0"


@dataclass(frozen=True)
class Image:
    name: str
    tag: str
    dockerfile: str
    what: str


IMAGES = (
    Image(
        "kafka", "panther-kafka:4.1.1", "deploy/kafka/Dockerfile", "Apache Kafka 4.1.1 (KRaft), Debian JRE"
    ),
    Image(
        "worker", f"panther-worker:{VERSION}", "deploy/worker/Dockerfile", "panther CLI + worker, no torch"
    ),
    Image(
        "triton-cpu",
        f"panther-triton-cpu:{VERSION}",
        "deploy/triton/Dockerfile.cpu",
        "the pinned wheel's tritonserver + PANTHER (CPU)",
    ),
)


@dataclass
class Built:
    name: str
    tag: str
    seconds: float
    size_mb: float
    cached: bool


def run(cmd: list[str], log: Path | None = None, **kw) -> None:
    """Run `cmd`; on failure exit with one line and the tail of its output (kept in `log`)."""
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kw)
    if log is not None:
        log.write_text(out.stdout)
    if out.returncode != 0:
        tail = "\n".join(out.stdout.splitlines()[-25:])
        sys.exit(f"{tail}\nfailed ({out.returncode}): {' '.join(cmd[:4])} … (full log: {log})")


def image_size_mb(tag: str) -> float:
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True, check=False
    )
    return round(int(out.stdout.strip()) / 1e6, 1) if out.returncode == 0 else 0.0


def base_key() -> str:
    digest = hashlib.sha256(f"{SUITE} {MIRROR} minbase {' '.join(BASE_PACKAGES)}".encode())
    for ca in sorted(EXTRA_CAS.glob("*.crt")):
        digest.update(ca.read_bytes())
    return digest.hexdigest()[:16]


def build_base(logs: Path) -> Built:
    key, started = base_key(), time.monotonic()
    label = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "panther.key"}}', BASE],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if label == key:
        return Built("base", BASE, 0.0, image_size_mb(BASE), True)
    if shutil.which("debootstrap") is None:
        sys.exit("debootstrap is not installed: apt-get install debootstrap (as root)")
    with tempfile.TemporaryDirectory(prefix="panther-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            logs / "base.log",
        )
        cas = sorted(EXTRA_CAS.glob("*.crt"))
        for ca in cas:
            shutil.copy(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)
        if cas:
            run(["chroot", str(rootfs), "update-ca-certificates"], logs / "base-ca.log")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        changes = [
            'CMD ["bash"]',
            f"LABEL panther.key={key}",
            "ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        ]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        args = ["docker", "import", *[x for c in changes for x in ("--change", c)], "-", BASE]
        run(args, logs / "base-import.log", stdin=tar.stdout)
        tar.wait()
    return Built("base", BASE, round(time.monotonic() - started, 1), image_size_mb(BASE), False)


def build_image(image: Image, public_base: bool, logs: Path) -> Built:
    started, before = time.monotonic(), image_id(image.tag)
    args = ["docker", "build", "-f", image.dockerfile, "-t", image.tag]
    if not public_base:
        args += ["--build-arg", f"BASE_IMAGE={BASE}"]
    run([*args, "."], logs / f"{image.name}.log", cwd=ROOT, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    after = image_id(image.tag)
    if before and before != after:  # the superseded build, now untagged: GBs per rebuild otherwise
        subprocess.run(["docker", "image", "rm", before], capture_output=True, check=False)  # in use: kept
    return Built(image.name, image.tag, round(time.monotonic() - started, 1), image_size_mb(image.tag),
                 before == after)  # fmt: skip


def image_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True, check=False
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default="", help="comma-separated subset of: " + ",".join(i.name for i in IMAGES)
    )
    parser.add_argument("--public-base", action="store_true", help="build on the Dockerfiles' public bases")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    opts = parser.parse_args()
    wanted = set(filter(None, opts.only.split(","))) or {i.name for i in IMAGES}
    if unknown := wanted - {i.name for i in IMAGES}:
        sys.exit(f"unknown image(s): {', '.join(sorted(unknown))}")
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        sys.exit("no Docker engine answers (docker info failed): start dockerd, see docs/DEPLOY.md")
    logs = Path(os.environ.get("PANTHER_HOME", Path.home() / ".cache/panther")) / "images"
    logs.mkdir(parents=True, exist_ok=True)
    say = (lambda *_: None) if opts.json else lambda msg: print(msg, file=sys.stderr, flush=True)
    built = []
    if not opts.public_base:
        say(f"== {BASE} (debootstrap {SUITE} minbase)")
        built.append(build_base(logs))
    for image in IMAGES:
        if image.name in wanted:
            say(f"== {image.tag}: {image.what}")
            built.append(build_image(image, opts.public_base, logs))
    if opts.json:
        print(json.dumps({"images": [asdict(b) for b in built], "logs": str(logs)}))
        return
    for b in built:
        print(f"{b.tag:32} {b.size_mb:9.1f} MB {b.seconds:7.1f} s{'  (cached)' if b.cached else ''}")


if __name__ == "__main__":
    main()
