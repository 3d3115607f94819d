"""hopfield-client: a Python client for hopfieldd (hopfield.v1.MemoryService).

    from hopfield_client import Client, HopfieldError

    with Client("127.0.0.1:50051") as client:
        client.create_bank("faces", dim=784)
        ids = client.store("faces", images)            # float32 [n, 784]
        results = client.retrieve("faces", noisy)       # RetrieveResults
        results.nearest_ids, results.patterns

`pb` is the generated message module (Bank, TrainResult, the enums...).
"""
from ._client import Client
from ._proto.hopfield.v1 import memory_service_pb2 as pb
from ._types import HopfieldError, Match, RetrieveResults
from ._version import __version__

__all__ = ["Client", "HopfieldError", "Match", "RetrieveResults", "pb", "__version__"]
