# pulseboard as a JupyterHub service: live metric charts in every user's notebooks, with
# no token to copy. Use this file as your jupyterhub_config.py, or load it from yours with
#     load_subconfig("/etc/jupyterhub/pulseboard_config.py")
# and keep your own authenticator and spawner settings. It needs `pip install pulseboard`
# in the Hub's environment and in the users' (for the kernels).
#
# Everything below works as is; these environment variables of the Hub adjust it:
#   PULSEBOARD_PORT         where the service listens (default 8765, on 127.0.0.1)
#   PULSEBOARD_SECRET_FILE  the JWT signing secret (default /srv/jupyterhub/pulseboard-secret,
#                           made on first start, mode 0600; keep it across restarts)
#   PULSEBOARD_DATA_DIR     where the service keeps its metric store (default /srv/jupyterhub/pulseboard,
#                           one server per store; keep it across restarts for whole training runs)
#   PULSEBOARD_HUB_POLICY   a JSON or YAML file granting channels by Hub group and admin flag
#   PULSEBOARD_HUB_TTL      lifetime of an exchanged token in seconds (default 3600)
#   PULSEBOARD_HUB_READ, PULSEBOARD_HUB_PUBLISH  replace the default grants (see docs/jupyterhub.md)
# By default each user reads sys.*, shared.* and user.<name>.*, and publishes user.<name>.*.

import os
import secrets
from pathlib import Path

c = get_config()  # noqa: F821  (JupyterHub provides get_config)

PULSEBOARD_PORT = int(os.environ.get("PULSEBOARD_PORT", "8765"))
SECRET_FILE = Path(os.environ.get("PULSEBOARD_SECRET_FILE", "/srv/jupyterhub/pulseboard-secret"))
DATA_DIR = os.environ.get("PULSEBOARD_DATA_DIR", "/srv/jupyterhub/pulseboard")
ACCESS = "access:services!service=pulseboard"


def pulseboard_secret(path: Path) -> str:
    """The signing secret in `path`, made (readable by the Hub's user only) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


pulseboard_env = {
    "PULSEBOARD_SECRET": pulseboard_secret(SECRET_FILE),
    "PULSEBOARD_DATA_DIR": DATA_DIR,
    # Only users holding this scope may exchange a token (every user, through the role below).
    "PULSEBOARD_HUB_SCOPE": ACCESS,
}
for name in ("PULSEBOARD_HUB_POLICY", "PULSEBOARD_HUB_TTL", "PULSEBOARD_HUB_READ", "PULSEBOARD_HUB_PUBLISH"):
    if os.environ.get(name):
        pulseboard_env[name] = os.environ[name]

c.JupyterHub.services = [
    {
        "name": "pulseboard",
        # Where the Hub's proxy sends /services/pulseboard/.
        "url": f"http://127.0.0.1:{PULSEBOARD_PORT}",
        # A managed service: the Hub starts and stops it and passes it JUPYTERHUB_API_URL
        # and its own JUPYTERHUB_API_TOKEN.
        "command": [
            "pulseboard", "serve", "--hub",
            "--host", "127.0.0.1", "--port", str(PULSEBOARD_PORT),
            "--base-path", "/services/pulseboard/",
        ],
        "environment": pulseboard_env,
    },
]

c.JupyterHub.load_roles = [
    # Every user may use the service.
    {"name": "user", "scopes": ["self", ACCESS]},
    # The service reads users' admin flag (for a policy's `admin:` grants) and nothing else.
    {"name": "pulseboard", "scopes": ["read:users"], "services": ["pulseboard"]},
]
# The token each user's server hands its kernels must carry the access scope too.
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", ACCESS]

# How notebooks find the service.
c.Spawner.environment = {
    # What the browser connects to: a path on the JupyterLab page's own origin, through the
    # Hub's proxy (so no CORS or origin settings are needed).
    "PULSEBOARD_URL": "/services/pulseboard/",
    # What the kernel calls for the token exchange and for publishing: the service as the
    # user's server reaches it (with containers or Kubernetes: the service's address there).
    "PULSEBOARD_HUB_URL": f"http://127.0.0.1:{PULSEBOARD_PORT}/services/pulseboard/",
}
