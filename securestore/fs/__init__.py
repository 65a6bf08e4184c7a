"""The fence: the only package that calls the operating system (like pyca/cryptography's hazmat).

osapi: the OS-call table. base: modes, flags, checks and error translation the modules below
share. dirs: `Dir`, a directory handle anchored on an fd. lines, locks and wipe: line reads,
locks and key-material wiping on a file in a `Dir`. paths: the store root, key and output files
outside it, temp dirs. legacy_files: reading a foreign legacy store to import.
"""

from .base import DIR_MODE, FILE_MODE, TEMP_PREFIX, EntryInfo, FsContext, check_name
from .dirs import Dir
from .trees import walk
from .unpublished import write_private
from .legacy_files import FileStamp, LegacyFile, LegacySource, legacy_backups, read_legacy_source
from .lines import iter_lines, lines_backward, read_tail, size_of
from .locks import FileLock, Owner, is_alive, lock, lock_owner, lock_plain
from .osapi import REAL_OS, OsApi, instrumented, io_call_names
from .rewrite import rewrite_in_place
from .process import PathArg, absolute_path, environment, join_path, path_text, user_config_dir, user_data_dir
from .paths import (
    inside_root,
    unsafe_ancestor,
    make_temp_dir,
    open_parent,
    open_root,
    read_key_file,
    remove_dir,
    write_key_file,
    write_output_file,
)
from .wipe import replace_wiping, shred

__all__ = [
    "write_private",
    "rewrite_in_place",
    "PathArg",
    "absolute_path",
    "path_text",
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
    "Owner",
    "check_name",
    "environment",
    "inside_root",
    "instrumented",
    "io_call_names",
    "is_alive",
    "iter_lines",
    "join_path",
    "legacy_backups",
    "lines_backward",
    "lock",
    "lock_owner",
    "lock_plain",
    "make_temp_dir",
    "open_parent",
    "open_root",
    "read_key_file",
    "read_legacy_source",
    "read_tail",
    "remove_dir",
    "replace_wiping",
    "shred",
    "size_of",
    "unsafe_ancestor",
    "user_config_dir",
    "user_data_dir",
    "walk",
    "write_key_file",
    "write_output_file",
]
