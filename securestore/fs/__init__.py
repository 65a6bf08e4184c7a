"""The fence: the only package that calls the operating system (like pyca/cryptography's hazmat)."""

from .osapi import REAL_OS, OsApi, instrumented, io_call_names
from .root import (
    FileStamp,
    LegacyFile,
    LegacySource,
    legacy_backups,
    make_temp_dir,
    open_parent,
    open_root,
    read_key_file,
    read_legacy_source,
    remove_dir,
    write_key_file,
    write_output_file,
)
from .safe import DIR_MODE, FILE_MODE, TEMP_PREFIX, Dir, EntryInfo, FileLock, FsContext, check_name

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "REAL_OS",
    "TEMP_PREFIX",
    "Dir",
    "EntryInfo",
    "FileLock",
    "FileStamp",
    "FsContext",
    "LegacyFile",
    "LegacySource",
    "OsApi",
    "check_name",
    "instrumented",
    "io_call_names",
    "legacy_backups",
    "read_legacy_source",
    "make_temp_dir",
    "open_parent",
    "remove_dir",
    "open_root",
    "read_key_file",
    "write_key_file",
    "write_output_file",
]
