"""The node agent's streaming endpoints: exec/attach over the Kubernetes WebSocket channel
protocols (``remotecommand``), and port forwarding (``portforward``, ``spdy``)."""
