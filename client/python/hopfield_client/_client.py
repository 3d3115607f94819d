"""Client: hopfield.v1.MemoryService with NumPy arrays in and out."""
from __future__ import annotations

import operator
import os
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import grpc
import numpy as np

from ._proto.hopfield.v1 import memory_service_pb2 as pb
from ._proto.hopfield.v1 import memory_service_pb2_grpc as pb_grpc
from ._types import HopfieldError, Match, RetrieveResults
from ._version import __version__

PathOrBytes = Union[str, "os.PathLike[str]", bytes]
ArrayLike = Any  # anything np.asarray takes
Progress = Callable[[int, int], None]  # (done, total)


class _Default:
    def __repr__(self) -> str:
        return "<the client's timeout>"


DEFAULT = _Default()
Timeout = Union[float, None, _Default]

_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_MAX_DIM = 65536
# Bytes a request or a reply spends besides its rows (bank name, options),
# and per row besides 4 bytes a value (field tags, lengths, the id).
_MESSAGE_OVERHEAD = 1024
_ROW_OVERHEAD = 24
_MATCH_BYTES = 24
_RETRIEVAL_BYTES = 96


def _read(value: Optional[PathOrBytes]) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def _enum(enum: Any, prefix: str, value: Union[str, int, None], field: str,
          aliases: Optional[dict] = None) -> int:
    """An enum value from its short name ("sparsemax"), its number or None
    (UNSPECIFIED: the default)."""
    if value is None:
        return 0
    if not isinstance(value, str):
        return int(value)
    names = {n[len(prefix):].lower(): v for n, v in enum.items()}
    names.update(aliases or {})
    if value.lower() not in names:
        raise HopfieldError(_INVALID, f"{field}: expected one of {sorted(names)}, got {value!r}")
    return names[value.lower()]


def _varint(value: int) -> bytes:
    """`value` as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_store(bank: str, ids: np.ndarray, rows: np.ndarray) -> bytes:
    """A serialized StoreRequest{bank, patterns: [Pattern{id, values}]}, the
    floats copied from `rows` as little-endian float32 (what protobuf's own
    serializer writes for `repeated float`, packed: field 1 varint id,
    omitted when 0; field 2 length-delimited values)."""
    values = np.ascontiguousarray(rows, dtype="<f4")
    row_bytes = values.shape[1] * 4
    block = values.tobytes()
    values_header = b"\x12" + _varint(row_bytes)
    name = bank.encode("utf-8")
    parts = [b"\x0a" + _varint(len(name)) + name]
    for i, pattern_id in enumerate(ids.tolist()):
        pattern = ((b"\x08" + _varint(pattern_id)) if pattern_id else b"") + \
            values_header + block[i * row_bytes:(i + 1) * row_bytes]
        parts.append(b"\x12" + _varint(len(pattern)) + pattern)
    return b"".join(parts)


def _matrix(array: ArrayLike, field: str) -> np.ndarray:
    """`array` as float32 [n, dim]; a 1-D array is one row."""
    try:
        rows = np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise HopfieldError(_INVALID, f"{field}: not a float32 array: {error}") from error
    if rows.ndim == 1:
        rows = rows[np.newaxis, :]
    if rows.ndim != 2:
        raise HopfieldError(_INVALID, f"{field}: expected a 1-D or 2-D array, "
                                      f"got shape {rows.shape}")
    return rows


def _ids(ids: ArrayLike, field: str = "ids") -> np.ndarray:
    """`ids` as a 1-D uint64 array (a single int is one id). A list is read
    element by element: NumPy would turn [np.uint64(7), 404] into floats."""
    if not isinstance(ids, np.ndarray):
        try:
            values = [operator.index(i) for i in (ids if np.ndim(ids) else [ids])]
        except TypeError as error:
            raise HopfieldError(_INVALID, f"{field}: expected integers: {error}") from error
        if any(not 0 <= v < 1 << 64 for v in values):
            raise HopfieldError(_INVALID, f"{field}: expected ids in [0, 2^64), got "
                                          f"{min(values)}..{max(values)}")
        return np.array(values, np.uint64)
    if ids.ndim == 0:
        ids = ids.reshape(1)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise HopfieldError(_INVALID, f"{field}: expected a 1-D array of integers, "
                                      f"got {ids.dtype} of shape {ids.shape}")
    if ids.dtype.kind == "i" and (ids < 0).any():
        raise HopfieldError(_INVALID, f"{field}: expected ids >= 0, got {ids.min()}")
    return ids.astype(np.uint64)


def _message(cls: Any, call: str, **fields: Any) -> Any:
    """cls(**fields): an unknown field is a TypeError (like any misspelt
    keyword), a value the field cannot hold (a negative uint32) INVALID_ARGUMENT."""
    unknown = set(fields) - set(cls.DESCRIPTOR.fields_by_name)
    if unknown:
        raise TypeError(f"{call}() got unexpected keyword arguments {sorted(unknown)}")
    try:
        return cls(**fields)
    except ValueError as error:
        raise HopfieldError(_INVALID, f"{cls.DESCRIPTOR.name}: {error}") from error


def _spans(total: int, step: int) -> Iterable[Tuple[int, int]]:
    """[start, stop) spans of at most `step`; one empty span when total is 0
    (so the server still checks the bank and the arguments)."""
    for start in range(0, max(total, 1), step):
        yield start, min(start + step, total)


class Client:
    """A connection to hopfieldd. Thread-safe; close() it, or use `with`.

    target: "host:port". api_key: sent as `authorization: Bearer KEY` on
    every call; None reads HOPFIELD_API_KEY, "" sends none. TLS is on when
    `tls` is true or any certificate is given: root_certificates (PEM, a
    path or bytes; None = the system's roots), certificate_chain and
    private_key (the client's, for mutual TLS), server_name_override (the
    name to verify instead of the target's host). timeout: seconds each
    request may take (None: no deadline); every call takes `timeout=` too.
    max_message_bytes: the server's --max_message_bytes; a call is split
    into requests whose requests and replies stay under 3/4 of it.
    options: further gRPC channel arguments.

    Every call raises HopfieldError on failure.
    """

    def __init__(self, target: str = "127.0.0.1:50051", *,
                 api_key: Optional[str] = None,
                 tls: bool = False,
                 root_certificates: Optional[PathOrBytes] = None,
                 certificate_chain: Optional[PathOrBytes] = None,
                 private_key: Optional[PathOrBytes] = None,
                 server_name_override: Optional[str] = None,
                 timeout: Optional[float] = 60.0,
                 max_message_bytes: int = 64 << 20,
                 options: Sequence[Tuple[str, Any]] = ()):
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("certificate_chain and private_key go together")
        if api_key is None:
            # A CR/LF from `$(cat file)` is never part of a key.
            api_key = os.environ.get("HOPFIELD_API_KEY", "").strip()
        if any(not 0x21 <= ord(c) <= 0x7E for c in api_key):
            # gRPC would refuse the header and put the key in its message.
            raise HopfieldError(_INVALID, "api_key holds a character a header "
                                "cannot carry (only visible ASCII; a trailing "
                                "newline from a file?)")
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._budget = max(max_message_bytes * 3 // 4 - _MESSAGE_OVERHEAD, 1)
        self._metadata = (("authorization", "Bearer " + api_key),) if api_key else None
        channel_options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.primary_user_agent", "hopfield-client-python/" + __version__),
            *options]
        if tls or root_certificates or certificate_chain or server_name_override:
            if server_name_override:
                channel_options.append(("grpc.ssl_target_name_override",
                                        server_name_override))
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(root_certificates),
                private_key=_read(private_key),
                certificate_chain=_read(certificate_chain))
            self.channel = grpc.secure_channel(target, credentials, channel_options)
        else:
            self.channel = grpc.insecure_channel(target, channel_options)
        self._stub = pb_grpc.MemoryServiceStub(self.channel)
        # Store with requests encoded straight from the array (see
        # _encode_store): building them through protobuf's Python objects
        # runs at ~30 MB/s.
        self._store_encoded = self.channel.unary_unary(
            "/hopfield.v1.MemoryService/Store",
            request_serializer=None,
            response_deserializer=pb.StoreResponse.FromString)

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: Timeout) -> Any:
        try:
            return method(request, timeout=self._deadline(timeout), metadata=self._metadata)
        except grpc.RpcError as error:
            raise HopfieldError.from_rpc_error(error) from error

    def _deadline(self, timeout: Timeout) -> Optional[float]:
        return self.timeout if isinstance(timeout, _Default) else timeout

    def _rows_per_request(self, row_bytes: int) -> int:
        return max(1, self._budget // row_bytes)

    # Banks.

    def create_bank(self, name: str, dim: int, *,
                    similarity: Union[str, int, None] = None,
                    separation: Union[str, int, None] = None,
                    search: Union[str, int, None] = None,
                    timeout: Timeout = DEFAULT, **config: Any) -> pb.Bank:
        """Creates a bank of `dim`-dimensional patterns and returns it, its
        defaults resolved. similarity "cosine" | "dot"; separation "softmax" |
        "softmax1" | "sparsemax" | "entmax"; search "auto" | "exact" |
        "approximate" (None: the default); **config: the other BankConfig
        fields (beta, entmax_alpha, max_iterations, tolerance, top_k,
        feature_dim, index_m, ...). Raises HopfieldError: ALREADY_EXISTS,
        INVALID_ARGUMENT (name, dim, a value), RESOURCE_EXHAUSTED (--max_banks).
        """
        bank_config = _message(
            pb.BankConfig, "create_bank", dim=dim,
            similarity=_enum(pb.Similarity, "SIMILARITY_", similarity, "similarity"),
            separation=_enum(pb.Separation, "SEPARATION_", separation, "separation"),
            search=_enum(pb.SearchMode, "SEARCH_MODE_", search, "search", {"auto": 0}),
            **config)
        return self._call(self._stub.CreateBank,
                          pb.CreateBankRequest(name=name, config=bank_config), timeout)

    def get_bank(self, name: str, *, timeout: Timeout = DEFAULT) -> pb.Bank:
        """The bank (size, resolved config, separation, feature map, index).
        Raises HopfieldError: NOT_FOUND."""
        return self._call(self._stub.GetBank, pb.GetBankRequest(name=name), timeout)

    def list_banks(self, *, timeout: Timeout = DEFAULT) -> List[pb.Bank]:
        """Every bank, by name."""
        return list(self._call(self._stub.ListBanks, pb.ListBanksRequest(), timeout).banks)

    def delete_bank(self, name: str, *, timeout: Timeout = DEFAULT) -> None:
        """Deletes the bank and its patterns. Raises HopfieldError: NOT_FOUND."""
        self._call(self._stub.DeleteBank, pb.DeleteBankRequest(name=name), timeout)

    # Patterns.

    def store(self, bank: str, patterns: ArrayLike, ids: Optional[ArrayLike] = None, *,
              progress: Optional[Progress] = None,
              timeout: Timeout = DEFAULT) -> np.ndarray:
        """Stores patterns (float32 [n, dim], or [dim] for one) and returns
        their ids (uint64 [n]). ids: one per pattern, 0 = assign one; a
        stored id is replaced. Large arrays go in several requests, in
        order, each all or nothing and with its own deadline: when one
        fails, the rows before it stay stored. progress(done, total) is
        called after each request. Raises HopfieldError: NOT_FOUND (bank),
        INVALID_ARGUMENT (dimension, NaN/Inf, zero norm under cosine),
        RESOURCE_EXHAUSTED (a limit).
        """
        rows = _matrix(patterns, "patterns")
        count = len(rows)
        given = np.zeros(count, np.uint64) if ids is None else _ids(ids)
        if len(given) != count:
            raise HopfieldError(_INVALID, f"ids: expected {count} (one per pattern), "
                                          f"got {len(given)}")
        assigned = np.empty(count, np.uint64)
        step = self._rows_per_request(4 * rows.shape[1] + _ROW_OVERHEAD)
        for start, stop in _spans(count, step):
            request = _encode_store(bank, given[start:stop], rows[start:stop])
            assigned[start:stop] = self._call(self._store_encoded, request, timeout).ids
            if progress:
                progress(stop, count)
        return assigned

    def get_patterns(self, bank: str, ids: ArrayLike, *,
                     timeout: Timeout = DEFAULT) -> np.ndarray:
        """The stored patterns, float32 [n, dim] in the order of `ids`, bit for
        bit as stored. Raises HopfieldError: NOT_FOUND (bank, or an id: the
        message names it)."""
        wanted = _ids(ids)
        dim = _MAX_DIM  # sizes the replies: the largest, unless the call is large
        if len(wanted) == 0 or len(wanted) > self._rows_per_request(4 * dim + _ROW_OVERHEAD):
            dim = self.get_bank(bank, timeout=timeout).config.dim
            if len(wanted) == 0:
                return np.empty((0, dim), np.float32)
        parts = []
        for start, stop in _spans(len(wanted), self._rows_per_request(4 * dim + _ROW_OVERHEAD)):
            request = pb.GetPatternsRequest(bank=bank, ids=wanted[start:stop].tolist())
            reply = self._call(self._stub.GetPatterns, request, timeout)
            parts.append(np.array([p.values for p in reply.patterns], np.float32))
        return np.concatenate(parts)

    def forget(self, bank: str, ids: ArrayLike, *, timeout: Timeout = DEFAULT) -> int:
        """Forgets the patterns; returns how many of the ids were stored.
        Raises HopfieldError: NOT_FOUND (bank)."""
        wanted = _ids(ids)
        forgotten = 0
        for start, stop in _spans(len(wanted), self._rows_per_request(12)):
            request = pb.ForgetRequest(bank=bank, ids=wanted[start:stop].tolist())
            forgotten += self._call(self._stub.Forget, request, timeout).forgotten
        return forgotten

    # Recall and learning.

    def retrieve(self, bank: str, queries: ArrayLike, *,
                 beta: Optional[float] = None,
                 separation: Union[str, int, None] = None,
                 search: Union[str, int, None] = None,
                 top_k: Optional[int] = None,
                 max_iterations: Optional[int] = None,
                 return_matches: Optional[int] = None,
                 omit_pattern: bool = False,
                 return_energy_trace: bool = False,
                 batch: int = 256,
                 progress: Optional[Progress] = None,
                 timeout: Timeout = DEFAULT) -> RetrieveResults:
        """Retrieves the stored pattern each query (float32 [n, dim], or [dim]
        for one) belongs to. The options override the bank's defaults for
        this call (None: the bank's). Queries go `batch` to a request (fewer
        when the messages would be too large), in order, each request with
        its own deadline; progress(done, total) after each. Raises
        HopfieldError: NOT_FOUND (bank), INVALID_ARGUMENT (dimension,
        NaN/Inf, no queries, zero norm under cosine, an option),
        FAILED_PRECONDITION (empty bank), DEADLINE_EXCEEDED.
        """
        rows = _matrix(queries, "queries")
        count, dim = rows.shape
        options = _message(
            pb.RetrieveOptions, "retrieve", beta=beta or 0, max_iterations=max_iterations or 0,
            separation=_enum(pb.Separation, "SEPARATION_", separation, "separation"),
            search=_enum(pb.SearchMode, "SEARCH_MODE_", search, "search", {"auto": 0}),
            top_k=top_k or 0, return_matches=return_matches or 0,
            omit_pattern=omit_pattern, return_energy_trace=return_energy_trace)
        reply_bytes = (_RETRIEVAL_BYTES + _MATCH_BYTES * max(return_matches or 1, 1)
                       + (0 if omit_pattern else 4 * dim)
                       + (9 * (max_iterations or 1000) if return_energy_trace else 0))
        step = min(max(batch, 1),
                   self._rows_per_request(max(4 * dim + _ROW_OVERHEAD, reply_bytes)))
        results: List[Any] = []
        for start, stop in _spans(count, step):
            request = pb.RetrieveRequest(
                bank=bank, options=options,
                queries=[pb.Query(values=row) for row in rows[start:stop].tolist()])
            results.extend(self._call(self._stub.Retrieve, request, timeout).results)
            if progress:
                progress(stop, count)

        def column(field: str, dtype: Any) -> np.ndarray:
            return np.array([getattr(r, field) for r in results], dtype)

        patterns = None
        if not omit_pattern:
            patterns = np.array([r.pattern for r in results], np.float32).reshape(count, dim)
        return RetrieveResults(
            patterns=patterns,
            nearest_ids=column("nearest_id", np.uint64),
            nearest_weights=column("nearest_weight", np.float32),
            iterations=column("iterations", np.uint32),
            converged=column("converged", bool),
            energy=column("energy", np.float64),
            support_size=column("support_size", np.uint32),
            metastable=column("metastable", bool),
            null_mass=column("null_mass", np.float32),
            exact=column("exact", bool),
            truncation_bound=column("truncation_bound", np.float32),
            beta=column("beta", np.float32),
            approximate=column("approximate", bool),
            matches=[[Match(m.id, m.weight, m.score) for m in r.matches] for r in results],
            energy_traces=([np.array(r.energy_trace, np.float64) for r in results]
                           if return_energy_trace else None))

    def train(self, bank: str, *, mode: Union[str, int, None] = None,
              progress: Optional[Callable[[pb.TrainProgress], None]] = None,
              timeout: Timeout = DEFAULT, **options: Any) -> pb.TrainResult:
        """Learns the bank's feature map; returns the TrainResult (accepted or
        not by the validation gate). mode "separation" | "uhop_compat";
        **options: the TrainOptions fields (feature_dim, iterations,
        learning_rate, temperature, batch_size, seed, ...). progress(message)
        gets each TrainProgress as it arrives (the last has done=True); if it
        raises, the training is cancelled and the exception propagates.
        `timeout` bounds the whole training. Raises HopfieldError: NOT_FOUND,
        INVALID_ARGUMENT, FAILED_PRECONDITION (empty bank, a Train already
        running), DEADLINE_EXCEEDED.
        """
        train_options = _message(pb.TrainOptions, "train",
                                 mode=_enum(pb.TrainMode, "TRAIN_MODE_", mode, "mode"),
                                 **options)
        call = self._stub.Train(pb.TrainRequest(bank=bank, options=train_options),
                                timeout=self._deadline(timeout), metadata=self._metadata)
        last = None
        try:
            for last in call:
                if progress:
                    progress(last)
        except grpc.RpcError as error:
            raise HopfieldError.from_rpc_error(error) from error
        except BaseException:
            call.cancel()
            raise
        if last is None or not last.done:
            raise HopfieldError(grpc.StatusCode.UNKNOWN, "Train ended without a result")
        return last.result

    # Service.

    def ping(self, payload: bytes = b"", *, timeout: Timeout = DEFAULT) -> bytes:
        """Echoes `payload` (a round trip through the server)."""
        return self._call(self._stub.Ping, pb.PingRequest(payload=payload), timeout).payload

    def backup(self, directory: str, *, timeout: Timeout = DEFAULT) -> pb.BackupResponse:
        """Writes a consistent copy of the server's data directory to
        `directory` (absolute, new, on the server's machine). Raises
        HopfieldError: INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION."""
        return self._call(self._stub.Backup, pb.BackupRequest(dir=directory), timeout)

    def health(self, service: str = "", *, timeout: Timeout = DEFAULT) -> bool:
        """Whether the server reports `service` ("" = overall,
        "hopfield.v1.MemoryService") SERVING (grpc.health.v1.Health/Check;
        False while loading or draining). Raises HopfieldError: NOT_FOUND
        (unknown service), UNAVAILABLE (unreachable)."""
        from ._proto.grpc.health.v1 import health_pb2, health_pb2_grpc
        reply = self._call(health_pb2_grpc.HealthStub(self.channel).Check,
                           health_pb2.HealthCheckRequest(service=service), timeout)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
