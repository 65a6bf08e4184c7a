"""Floor 4, the recipes users call: the store facade, sessions, reads, key sources.

This package's namespace is the public surface a command line or tool builds on (the CLI
imports nothing else but securestore.errors and securestore.config): the store and its
sessions, the key and environment names, verify and its reports, the audit tools (api/
audit_tools.py) and the files outside the store (api/files.py). Each name is a re-export of a
public class, function or constant; where it is defined may change, this name does not."""

from ..audit.errors import RecordError
from ..audit.keys import SignerKey, VerifierKey
from ..audit.report import LogReport
from ..core.policy import parse_json_text
from ..core.secrets import Secret, scrub_text
from .audit_tools import (
    AuditTrailDrill,
    check_proof_file,
    export_anchor,
    export_consistency_proof,
    export_inclusion_proof,
    read_anchor,
    verify_options,
)
from .files import (
    ROOT_ENV,
    RawFile,
    ScratchDir,
    configured_signing_key,
    default_root,
    environment,
    make_scratch_dir,
    new_signing_key_file,
    raw_store_files,
    read_input_file,
    read_public_key,
    read_seed,
    write_new_file,
)
from .keys import (
    DEFAULT_KEY_NAME,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    SIGNING_KEY_ENV,
    SIGNING_KEY_FILE_ENV,
    SeedOut,
    generate_master_key,
)
from .session import Session, SlotHandle
from ..core.policy import describe_key
from .copying import CopyReport, copy_store
from .doctor import DoctorReport, diagnose
from .keyring import KEY_DIR_ENV, KeyRing, find_keyring, key_home, keyring_of
from .setup import init_store, pg_setup, store_label
from .store import SecureStore, open_store
from .verify import Inspection, VerifyOptions, VerifyReport, inspect_source, verify_store
from .views import SessionInfo, SessionView

__all__ = [
    "DEFAULT_KEY_NAME",
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE_ENV",
    "ROOT_ENV",
    "SIGNING_KEY_ENV",
    "SIGNING_KEY_FILE_ENV",
    "AuditTrailDrill",
    "CopyReport",
    "Inspection",
    "LogReport",
    "RawFile",
    "RecordError",
    "ScratchDir",
    "Secret",
    "SecureStore",
    "SeedOut",
    "Session",
    "SessionInfo",
    "SessionView",
    "SignerKey",
    "SlotHandle",
    "VerifierKey",
    "VerifyOptions",
    "VerifyReport",
    "check_proof_file",
    "copy_store",
    "configured_signing_key",
    "default_root",
    "environment",
    "export_anchor",
    "export_consistency_proof",
    "export_inclusion_proof",
    "generate_master_key",
    "init_store",
    "describe_key",
    "diagnose",
    "DoctorReport",
    "find_keyring",
    "keyring_of",
    "key_home",
    "KEY_DIR_ENV",
    "KeyRing",
    "inspect_source",
    "make_scratch_dir",
    "new_signing_key_file",
    "open_store",
    "parse_json_text",
    "pg_setup",
    "raw_store_files",
    "read_anchor",
    "read_input_file",
    "read_public_key",
    "read_seed",
    "scrub_text",
    "store_label",
    "verify_options",
    "verify_store",
    "write_new_file",
]
