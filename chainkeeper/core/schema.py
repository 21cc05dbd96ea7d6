"""The whole schema: importing this module registers every stage's tables on Base."""

from chainkeeper.annotation import tables as _annotation_tables  # noqa: F401
from chainkeeper.apps.support import tables as _support_tables  # noqa: F401
from chainkeeper.core import tables as _core_tables  # noqa: F401
from chainkeeper.core.db import Base
from chainkeeper.data import tables as _data_tables  # noqa: F401
from chainkeeper.governance import tables as _governance_tables  # noqa: F401
from chainkeeper.monitoring import tables as _monitoring_tables  # noqa: F401
from chainkeeper.registry import tables as _registry_tables  # noqa: F401
from chainkeeper.serving import tables as _serving_tables  # noqa: F401
from chainkeeper.training import tables as _training_tables  # noqa: F401

metadata = Base.metadata

__all__ = ["metadata"]
