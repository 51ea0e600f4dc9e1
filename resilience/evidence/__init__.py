"""The run directory as evidence: naming, manifest, signature, verification, ledger.

A run directory is worth something to an auditor only if nobody can change it
unnoticed. So, after the reports are rendered:

1. `write_manifest` hashes every file (SHA-256, `sha256sum` format, so
   `sha256sum -c MANIFEST.sha256` works without this tool);
2. `sign_manifest` signs the manifest with an Ed25519 key (optional);
3. `append_ledger` adds one line to `reports/ledger.jsonl` that quotes the
   manifest digest and the hash of the previous line (a hash chain), so a run
   that is deleted or whose ledger line is edited is noticed too.

`seal_run` does all three in that order; `record_start` adds a "started" line
when the run directory is created, so a run that never finished still shows.
`verify` checks a run (files, signature, trusted keys, its ledger lines and the
whole chain); `verify_ledger` checks every run the ledger names.

The parts: `rundir` (naming, the stated verdict), `manifest`, `signature`,
`ledger`, `verify` and `seal` (all of it in order, and `EvidenceStore`).
"""

from __future__ import annotations

from .ledger import (GENESIS, LEDGER, SEALED, STARTED, LedgerChain, LedgerLine, LedgerResult, append_ledger,
                     ledger_entry, read_ledger, record_start, verify_ledger)
from .manifest import MANIFEST, SIGNATURE, manifest_digest, manifest_text, sha256_file, write_manifest
from .rundir import new_run_dir, run_verdict
from .seal import EvidenceStore, seal_run
from .signature import key_fingerprint, keygen, load_public_key, sign_manifest
from .verify import (INTACT, LEDGER_BROKEN, MODIFIED, NO_MANIFEST, NOT_COVERED, NOT_IN_LEDGER, SIGNATURE_INVALID,
                     UNSIGNED, UNSIGNED_INTACT, VerifyResult, verify)

__all__ = ["GENESIS", "LEDGER", "SEALED", "STARTED", "LedgerChain", "LedgerLine", "LedgerResult", "append_ledger",
           "ledger_entry", "read_ledger", "record_start", "verify_ledger", "MANIFEST", "SIGNATURE", "manifest_digest",
           "manifest_text", "sha256_file", "write_manifest", "new_run_dir", "run_verdict", "EvidenceStore",
           "seal_run", "key_fingerprint", "keygen", "load_public_key", "sign_manifest", "INTACT", "LEDGER_BROKEN",
           "MODIFIED", "NO_MANIFEST", "NOT_COVERED", "NOT_IN_LEDGER", "SIGNATURE_INVALID", "UNSIGNED", "UNSIGNED_INTACT",
           "VerifyResult", "verify"]
