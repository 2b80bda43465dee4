# moto's DynamoDB under a single-threaded werkzeug server (see dynamo.rs for why one
# thread), with one change to how moto undoes a failed TransactWriteItems.
#
# moto 5 keeps a deep copy of every table a transaction names, once per item of the
# transaction, so that it can put the tables back if a condition fails. Each write then
# costs time in proportion to everything the table holds: in topology B's timing runs
# (a few hundred sessions, the change log holding every value written in the last ten
# minutes) the emulator spent three quarters of its time copying, used a whole core, and
# answered the auth servers' writes seconds late. DynamoDB itself costs the same per write
# however large the table is.
#
# So, before moto runs a transaction, this keeps a copy of only the items the transaction
# names, lets moto run it without copying whole tables, and on any failure puts those items
# back as they were. What a transaction does and answers is moto's own; only the backup
# is smaller. Anything this cannot read ahead of time (an unknown table, a malformed key)
# goes to moto unchanged, which answers as it always did.
import copy
import sys

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table


class TablesNotCopied:
    """The `copy` module as moto's transaction code sees it: a table is not copied."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


moto_transact_write_items = DynamoDBBackend.transact_write_items


def named_items(backend, transact_items):
    """(table, hash key, range key, a copy of the item or None) for each item named."""
    saved = []
    for entry in transact_items:
        op = next(iter(entry.values()))
        table = backend.get_table(op["TableName"])
        key = op["Item"] if "Item" in op else op["Key"]
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = (
            DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        )
        current = table.get_item(hash_key, range_key)
        saved.append((table, hash_key, range_key, copy.deepcopy(current)))
    return saved


def put_back(table, hash_key, range_key, item):
    if range_key is not None:
        if item is None:
            table.items[hash_key].pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


def transact_write_items(self, transact_items):
    try:
        saved = named_items(self, transact_items)
    except Exception:
        return moto_transact_write_items(self, transact_items)
    dynamodb_models.copy = TablesNotCopied()
    try:
        return moto_transact_write_items(self, transact_items)
    except BaseException:
        # Last named first: an item named twice (which moto refuses) ends as it began.
        for table, hash_key, range_key, item in reversed(saved):
            put_back(table, hash_key, range_key, item)
        raise
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = transact_write_items

app = DomainDispatcherApplication(create_backend_app)
run_simple(sys.argv[2], int(sys.argv[1]), app, threaded=False, use_reloader=False)
