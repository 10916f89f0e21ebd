"""Gateway mode: the same Mistral code, its calls routed through the Respan gateway.

    RESPAN_API_KEY=... python examples/gateway.py

With no RESPAN_API_KEY it runs offline: a loopback stand-in plays the gateway and the example
prints what the gateway received. (Zero-code, the switch is `respan-instrument --gateway ...`.)
"""

import base64
import json
import os

from _standin import mistral_client

from respan_auto import Respan, gateway_params, propagate_attributes

standin = None
if not os.getenv("RESPAN_API_KEY"):
    from respan_auto.testing.mistral_server import MistralServer

    standin = MistralServer(extra_headers={"X-Respan-Log-Id": "offline-log-1"}).start()
    os.environ.update(RESPAN_API_KEY="offline", RESPAN_GATEWAY_URL=f"{standin.url}/api")
    print(f"(RESPAN_API_KEY is not set: a loopback stand-in plays the gateway at {standin.url})\n")

respan = Respan(gateway=True, tracing=standin is None)  # offline: gateway only, nothing leaves the machine
client = mistral_client()

with propagate_attributes(customer_identifier="user_123", thread_identifier="conversation_456"):
    with gateway_params(fallback_models=["gpt-4.1-nano"], metadata={"session_id": "abc123"}):
        response = client.chat.complete(
            model="mistral-large-latest",
            messages=[{"role": "user", "content": "Hello"}],
        )
print(response.choices[0].message.content)

if standin is not None:
    request = standin.requests[-1]
    params = json.loads(base64.b64decode(request.headers["x-data-respan-params"]))
    print(f"\nthe gateway got POST {request.path}, authorised with the Respan key")
    print(f"Respan parameters: {json.dumps(params)}")
