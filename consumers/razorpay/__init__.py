"""The Razorpay payment pipeline: signed webhook ingress, ledger workers and their store.

``ingress`` verifies and enqueues webhooks, ``handlers`` applies them to the ledger kept by
``store`` under the state machines of ``states``; ``cli`` runs either side.
"""
