#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<fuzzer>/: a few tiny valid inputs.

Run from anywhere (python3 fuzz/make_seeds.py); the output is deterministic,
and the files are committed. Only the standard library: request messages are
encoded by hand in the protobuf wire format (field numbers from
proto/hopfield/v1/memory_service.proto), and each starts with the selector
byte request_fuzzer.cc reads (0 CreateBank, 1 Store, 2 Retrieve,
3 GetPatterns, 4 a bank name).
"""
import gzip
import os
import shutil
import struct

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(fuzzer, name, data):
    folder = os.path.join(CORPUS, fuzzer)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# --- IDX ---------------------------------------------------------------------


def idx(type_code, shape, payload):
    header = bytes([0, 0, type_code, len(shape)])
    header += b"".join(struct.pack(">I", extent) for extent in shape)
    return header + payload


def idx_seeds():
    ubyte = idx(0x08, [2, 1, 2], bytes([0, 255, 51, 102]))
    write("idx_fuzzer", "ubyte_2x1x2.idx", ubyte)
    write("idx_fuzzer", "ubyte_2x1x2.idx.gz", gzip.compress(ubyte, mtime=0))
    # Two gzip members, as `cat a.gz b.gz` makes.
    write("idx_fuzzer", "ubyte_two_members.idx.gz",
          gzip.compress(ubyte[:10], mtime=0) +
          gzip.compress(ubyte[10:], mtime=0))
    floats = idx(0x0D, [1, 3], struct.pack(">3f", 1.5, -2.0, 0.25))
    write("idx_fuzzer", "float_1x3.idx", floats)
    write("idx_fuzzer", "labels_1d.idx", idx(0x08, [3], bytes([7, 2, 1])))


# --- CSV ---------------------------------------------------------------------


def csv_seeds():
    write("csv_fuzzer", "header.csv", b"x,y,z\n1,2,3\n 4.5 , -6 ,1e3\n\n")
    write("csv_fuzzer", "crlf.csv", b"0.5,0.25\r\n-1,2\r\n")
    write("csv_fuzzer", "one_column.csv", b"1\n2\n3")
    write("csv_fuzzer", "special.csv", b"nan,inf,-inf,0x1p-3\n")


# --- npy ---------------------------------------------------------------------


def npy(descr, shape, payload, version=1):
    header = ("{'descr': '%s', 'fortran_order': False, 'shape': %s, }" %
              (descr, shape))
    prefix = 10 if version == 1 else 12
    header += " " * ((64 - (prefix + len(header) + 1) % 64) % 64) + "\n"
    length = (struct.pack("<H", len(header)) if version == 1 else
              struct.pack("<I", len(header)))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode() + payload


def npy_seeds():
    write("npy_fuzzer", "f4_2x3.npy",
          npy("<f4", "(2, 3)", struct.pack("<6f", 1.5, -2, 3, 4, 5, 6)))
    write("npy_fuzzer", "f8_2x1.npy", npy("<f8", "(2, 1)",
                                          struct.pack("<2d", 1e300, -0.5)))
    write("npy_fuzzer", "u1_4.npy", npy("|u1", "(4,)", bytes([1, 2, 3, 4])))
    write("npy_fuzzer", "i4_1x2.npy", npy("<i4", "(1, 2)",
                                          struct.pack("<2i", -7, 7)))
    write("npy_fuzzer", "i8_v2.npy", npy("<i8", "(2,)",
                                         struct.pack("<2q", 1 << 40, -1),
                                         version=2))


# --- requests ----------------------------------------------------------------


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_float(number, value):
    return varint(number << 3 | 5) + struct.pack("<f", value)


def field_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def packed_floats(number, values):
    return field_bytes(number, struct.pack("<%df" % len(values), *values))


def packed_varints(number, values):
    return field_bytes(number, b"".join(varint(v) for v in values))


def request_seeds():
    # CreateBankRequest {name=1, config=2 BankConfig {dim=1, similarity=2,
    # separation=3, entmax_alpha=4, beta=5, max_iterations=6, tolerance=7,
    # search=8, top_k=9, feature_dim=10}}
    config = (field_varint(1, 4) + field_varint(2, 2) + field_varint(3, 4) +
              field_float(4, 1.5) + field_float(5, 8.0) + field_varint(6, 5) +
              field_float(7, 1e-3) + field_varint(8, 1) + field_varint(9, 8) +
              field_varint(10, 4))
    write("request_fuzzer", "create_bank",
          b"\x00" + field_bytes(1, b"faces") + field_bytes(2, config))
    write("request_fuzzer", "create_bank_defaults",
          b"\x00" + field_bytes(1, b"a") + field_bytes(2, field_varint(1, 784)))
    # StoreRequest {bank=1, patterns=2 Pattern {id=1, values=2}}
    p1 = field_varint(1, 7) + packed_floats(2, [1, 0, 0.5, -1])
    p2 = packed_floats(2, [0, 2, 0, 0])
    write("request_fuzzer", "store",
          b"\x01" + field_bytes(1, b"faces") + field_bytes(2, p1) +
          field_bytes(2, p2))
    # RetrieveRequest {bank=1, queries=2 Query {values=1}, options=3
    # RetrieveOptions {beta=1, max_iterations=2, separation=3, search=4,
    # top_k=5, return_matches=6, omit_pattern=7, return_energy_trace=8}}
    q1 = packed_floats(1, [1, 0.1, 0, 0])
    q2 = packed_floats(1, [0, 0, 1, 1])
    for separation in range(5):
        options = (field_float(1, 4.0) + field_varint(2, 20) +
                   field_varint(3, separation) + field_varint(6, 3) +
                   field_varint(8, 1))
        write("request_fuzzer", "retrieve_batch_sep%d" % separation,
              b"\x02" + field_bytes(1, b"faces") + field_bytes(2, q1) +
              field_bytes(2, q2) + field_bytes(3, options))
    write("request_fuzzer", "retrieve_one",
          b"\x02" + field_bytes(1, b"faces") + field_bytes(2, q1))
    # GetPatternsRequest {bank=1, ids=2}
    write("request_fuzzer", "get_patterns",
          b"\x03" + field_bytes(1, b"faces") + packed_varints(2, [1, 5, 9]))
    write("request_fuzzer", "name", b"\x04fashion-mnist_2")


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    idx_seeds()
    csv_seeds()
    npy_seeds()
    request_seeds()


if __name__ == "__main__":
    main()
