"""Dataverse webhook bodies for tests: the documented RemoteExecutionContext example, and a
builder for contexts of any message, table, target and images (the documented field set)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

# The request body of "Use webhooks to create external handlers for server events"
# (learn.microsoft.com/power-apps/developer/data-platform/use-webhooks), verbatim but for the
# indentation (halved to fit the line length): an Update of a contact, PostOperation (40),
# asynchronous, with a post-image.
DOCS_EXAMPLE = rb"""{
  "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
  "CorrelationId": "b374239d-4233-41a9-8b17-a86cb4f737b5",
  "Depth": 1,
  "InitiatingUserId": "75c2dd85-e89e-e711-8122-000d3aa2331c",
  "InputParameters": [{
    "key": "Target",
    "value": {
      "__type": "Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",
      "Attributes": [{
        "key": "firstname",
        "value": "James"
      }, {
        "key": "contactid",
        "value": "6d81597f-0f9f-e711-8122-000d3aa2331c"
      }, {
        "key": "fullname",
        "value": "James Glynn (sample)"
      }, {
        "key": "yomifullname",
        "value": "James Glynn (sample)"
      }, {
        "key": "modifiedon",
        "value": "\/Date(1506384247000)\/"
      }, {
        "key": "modifiedby",
        "value": {
          "__type": "EntityReference:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",
          "Id": "75c2dd85-e89e-e711-8122-000d3aa2331c",
          "KeyAttributes": [],
          "LogicalName": "systemuser",
          "Name": null,
          "RowVersion": null
        }
      }, {
        "key": "modifiedonbehalfby",
        "value": null
      }],
      "EntityState": null,
      "FormattedValues": [],
      "Id": "6d81597f-0f9f-e711-8122-000d3aa2331c",
      "KeyAttributes": [],
      "LogicalName": "contact",
      "RelatedEntities": [],
      "RowVersion": null
    }
  }],
  "IsExecutingOffline": false,
  "IsInTransaction": false,
  "IsOfflinePlayback": false,
  "IsolationMode": 1,
  "MessageName": "Update",
  "Mode": 1,
  "OperationCreatedOn": "\/Date(1506409448000-0700)\/",
  "OperationId": "4af10637-4ea2-e711-8122-000d3aa2331c",
  "OrganizationId": "4ef5b371-e89e-e711-8122-000d3aa2331c",
  "OrganizationName": "OrgName",
  "OutputParameters": [],
  "OwningExtension": {
    "Id": "75417616-4ea2-e711-8122-000d3aa2331c",
    "KeyAttributes": [],
    "LogicalName": "sdkmessageprocessingstep",
    "Name": null,
    "RowVersion": null
  },
  "ParentContext": {
    "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
    "CorrelationId": "b374239d-4233-41a9-8b17-a86cb4f737b5",
    "Depth": 1,
    "InitiatingUserId": "75c2dd85-e89e-e711-8122-000d3aa2331c",
    "InputParameters": [{
      "key": "Target",
      "value": {
        "__type": "Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts",
        "Attributes": [{
          "key": "firstname",
          "value": "James"
        }, {
          "key": "contactid",
          "value": "6d81597f-0f9f-e711-8122-000d3aa2331c"
        }],
        "EntityState": null,
        "FormattedValues": [],
        "Id": "6d81597f-0f9f-e711-8122-000d3aa2331c",
        "KeyAttributes": [],
        "LogicalName": "contact",
        "RelatedEntities": [],
        "RowVersion": null
      }
    }, {
      "key": "SuppressDuplicateDetection",
      "value": false
    }],
    "IsExecutingOffline": false,
    "IsInTransaction": false,
    "IsOfflinePlayback": false,
    "IsolationMode": 1,
    "MessageName": "Update",
    "Mode": 1,
    "OperationCreatedOn": "\/Date(1506409448000-0700)\/",
    "OperationId": "4af10637-4ea2-e711-8122-000d3aa2331c",
    "OrganizationId": "4ef5b371-e89e-e711-8122-000d3aa2331c",
    "OrganizationName": "OneFarm",
    "OutputParameters": [],
    "OwningExtension": {
      "Id": "75417616-4ea2-e711-8122-000d3aa2331c",
      "KeyAttributes": [],
      "LogicalName": "sdkmessageprocessingstep",
      "Name": null,
      "RowVersion": null
    },
    "ParentContext": null,
    "PostEntityImages": [],
    "PreEntityImages": [],
    "PrimaryEntityId": "6d81597f-0f9f-e711-8122-000d3aa2331c",
    "PrimaryEntityName": "contact",
    "RequestId": null,
    "SecondaryEntityName": "none",
    "SharedVariables": [{
      "key": "ChangedEntityTypes",
      "value": [{
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "feedback",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "contract",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "salesorder",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "connection",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "socialactivity",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "postfollow",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "incident",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "invoice",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "entitlement",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "lead",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "opportunity",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "quote",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "socialprofile",
        "value": "Update"
      }, {
        "__type": "KeyValuePairOfstringstring:#System.Collections.Generic",
        "key": "contact",
        "value": "Update"
      }]
    }],
    "Stage": 30,
    "UserId": "75c2dd85-e89e-e711-8122-000d3aa2331c"
  },
  "PostEntityImages": [{
    "key": "AsynchronousStepPrimaryName",
    "value": {
      "Attributes": [{
        "key": "fullname",
        "value": "James Glynn (sample)"
      }, {
        "key": "contactid",
        "value": "6d81597f-0f9f-e711-8122-000d3aa2331c"
      }],
      "EntityState": null,
      "FormattedValues": [],
      "Id": "6d81597f-0f9f-e711-8122-000d3aa2331c",
      "KeyAttributes": [],
      "LogicalName": "contact",
      "RelatedEntities": [],
      "RowVersion": null
    }
  }],
  "PreEntityImages": [],
  "PrimaryEntityId": "6d81597f-0f9f-e711-8122-000d3aa2331c",
  "PrimaryEntityName": "contact",
  "RequestId": null,
  "SecondaryEntityName": "none",
  "SharedVariables": [],
  "Stage": 40,
  "UserId": "75c2dd85-e89e-e711-8122-000d3aa2331c"
}"""

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
DOC_CONTACT = "6d81597f-0f9f-e711-8122-000d3aa2331c"
DOC_USER = "75c2dd85-e89e-e711-8122-000d3aa2331c"

ACCOUNT = "a1b2c3d4-0000-4000-8000-00000000a001"
OTHER_ACCOUNT = "a1b2c3d4-0000-4000-8000-00000000a002"
CONTACT = "c0c0c0c0-0000-4000-8000-00000000c001"
ACTIVITY = "e0e0e0e0-0000-4000-8000-00000000e001"
INCIDENT = "f0f0f0f0-0000-4000-8000-00000000f001"
APP_USER = "9a9a9a9a-0000-4000-8000-000000009a01"
HUMAN = "8b8b8b8b-0000-4000-8000-000000008b01"
CORRELATION = "11111111-2222-4333-8444-555555555555"
OPERATION = "66666666-7777-4888-8999-aaaaaaaaaaaa"
ORG = "4ef5b371-e89e-e711-8122-000d3aa2331c"

MODIFIED = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
CREATED = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def wcf(moment: datetime, offset: str = "") -> str:
    return f"/Date({ms(moment)}{offset})/"


def ref(entity: str, record_id: str) -> dict[str, Any]:
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": entity,
        "Name": None,
        "RowVersion": None,
    }


def option(value: int) -> dict[str, Any]:
    return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}


def money(value: float) -> dict[str, Any]:
    return {"__type": f"Money:{CONTRACTS}", "Value": value}


def entity(name: str, record_id: str, attributes: dict[str, Any], *, typed: bool = True):
    value: dict[str, Any] = {
        "Attributes": [{"key": key, "value": item} for key, item in attributes.items()],
        "EntityState": None,
        "FormattedValues": [],
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": name,
        "RelatedEntities": [],
        "RowVersion": None,
    }
    return {"__type": f"Entity:{CONTRACTS}", **value} if typed else value


def context(
    *,
    message: str = "Update",
    table: str = "account",
    record_id: str = ACCOUNT,
    target: dict[str, Any] | None = None,
    pre: dict[str, Any] | None = None,
    post: dict[str, Any] | None = None,
    user: str = HUMAN,
    drop: tuple[str, ...] = (),
    **overrides: Any,
) -> dict[str, Any]:
    """A RemoteExecutionContext as a webhook step posts it (the documented field set)."""
    if message == "Delete":
        target_value: dict[str, Any] = ref(table, record_id)
    else:
        target_value = entity(table, record_id, target or {})
    document: dict[str, Any] = {
        "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
        "CorrelationId": CORRELATION,
        "Depth": 1,
        "InitiatingUserId": user,
        "InputParameters": [{"key": "Target", "value": target_value}],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message,
        "Mode": 1,
        "OperationCreatedOn": wcf(RECEIVED),
        "OperationId": OPERATION,
        "OrganizationId": ORG,
        "OrganizationName": "contoso",
        "OutputParameters": [],
        "OwningExtension": ref("sdkmessageprocessingstep", "75417616-4ea2-e711-8122-000d3aa2331c"),
        "ParentContext": None,
        "PostEntityImages": (
            [] if post is None else [{"key": "PostImage", "value": entity(table, record_id, post)}]
        ),
        "PreEntityImages": (
            [] if pre is None else [{"key": "PreImage", "value": entity(table, record_id, pre)}]
        ),
        "PrimaryEntityId": record_id,
        "PrimaryEntityName": table,
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserId": user,
    }
    document.update(overrides)
    for name in drop:
        del document[name]
    return document


def body(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()
