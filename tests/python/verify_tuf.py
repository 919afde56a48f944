#!/usr/bin/env python3
"""Verifies a published Hearth recipe repository with python-tuf, the TUF reference client.

    verify_tuf.py --root TRUSTED_ROOT --metadata DIR --targets DIR

Runs the whole TUF client workflow of python-tuf's `ngclient.Updater` from the trusted root
(`1.root.json`, as a node pins it): every newer root version in DIR (rotations), then
timestamp, snapshot and targets, with python-tuf's signature, threshold, version, expiry and
format checks; then downloads every listed target from the targets DIR and checks its length
and hashes. Prints one line per checked file and exits 0; any refusal is printed and exits 1.
Exits 2 when python-tuf is not installed (`pip install tuf`): a missing verifier is never a pass.
"""

import argparse
import os
import sys
import tempfile
from urllib.parse import unquote, urlparse

try:
    from tuf.api.exceptions import DownloadHTTPError
    from tuf.api.metadata import Metadata
    from tuf.ngclient import FetcherInterface, Updater
except ImportError as e:
    print(f"python-tuf is not installed ({e}); install it with `pip install tuf`", file=sys.stderr)
    sys.exit(2)


class DirFetcher(FetcherInterface):
    """Serves `file://` URLs from the local disk; a missing file is a 404, as over HTTP."""

    def _fetch(self, url):
        path = unquote(urlparse(url).path)
        if not os.path.isfile(path):
            raise DownloadHTTPError(f"{path} not found", 404)
        with open(path, "rb") as f:
            return iter([f.read()])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="trusted root metadata (1.root.json)")
    ap.add_argument("--metadata", required=True, help="directory of published metadata")
    ap.add_argument("--targets", required=True, help="directory the targets are under")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as work:
        local = os.path.join(work, "metadata")
        downloads = os.path.join(work, "targets")
        os.makedirs(local)
        os.makedirs(downloads)
        with open(args.root, "rb") as f:
            root = f.read()
        try:
            updater = Updater(
                metadata_dir=local,
                metadata_base_url="file://" + os.path.abspath(args.metadata) + "/",
                target_dir=downloads,
                target_base_url="file://" + os.path.abspath(args.targets) + "/",
                fetcher=DirFetcher(),
                bootstrap=root,
            )
            updater.refresh()
            # What python-tuf accepted, as its updater stored it.
            trusted = {
                role: Metadata.from_file(os.path.join(local, f"{role}.json")).signed
                for role in ("root", "timestamp", "snapshot", "targets")
            }
            for role, signed in trusted.items():
                print(f"ok {role} version {signed.version} expires {signed.expires.isoformat()}")
            listed = trusted["targets"].targets
            if not listed:
                raise ValueError("the targets metadata lists no target")
            for path in sorted(listed):
                info = updater.get_targetinfo(path)
                if info is None:
                    raise ValueError(f"target {path} listed but not found by the updater")
                updater.download_target(info)
                print(f"ok target {path} ({info.length} bytes)")
        except Exception as e:  # every refusal is a failure, with python-tuf's reason
            cause = f" (caused by {type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
            print(f"python-tuf refused the repository: {type(e).__name__}: {e}{cause}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
