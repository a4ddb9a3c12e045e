"""jaxcoder data prepare: raw repositories -> filtered, deduplicated, redacted, dependency-ordered,
tokenized ArrayRecord shards with a manifest (data.prepared_dir).

Sources come from data.sources (repo_dirs, repo_roots, records); every step's counts land in
manifest.json. Re-running with unchanged inputs and config does nothing.
"""

from __future__ import annotations

import json

from jaxcoder.commands import common
from jaxcoder.data.prepare import prepare

SUBCOMMANDS = ("prepare",)


def main(argv):
    sub = argv[1:]
    if sub != ["prepare"]:
        raise SystemExit(f"usage: jaxcoder data {{{'|'.join(SUBCOMMANDS)}}} --config=...  (got {' '.join(sub)!r})")
    run = common.require_config()
    manifest = prepare(run.data, run.tokenizer)
    counts = manifest["counts"]
    dropped = {k.split("/", 1)[1]: v for k, v in counts.items() if k.startswith("dropped/")}
    print(f"data: {manifest['repositories']} repositories, {counts.get('files_seen', 0)} files seen, "
          f"{counts.get('files_kept', 0)} kept; {counts.get('duplicates/exact', 0)} exact and "
          f"{counts.get('duplicates/near', 0)} near duplicates removed; {manifest['total_tokens']:,} training tokens")
    print("dropped: " + json.dumps(dict(sorted(dropped.items(), key=lambda kv: -kv[1]))))
    print("redacted: " + json.dumps({k.split('/', 1)[1]: v for k, v in counts.items() if k.startswith('redacted/')}))
    print("tokens: " + json.dumps(manifest["tokens"]))
    print(f"manifest: {run.data.prepared_dir}/manifest.json")
