"""Test corpora: real-format fake secrets inside agent messages, and benign look-alikes.

Secrets are generated from a fixed seed (so no credential-shaped literal sits in the repo
for scanners to trip on) and every one is fake.
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid
from dataclasses import dataclass

_SEED = 20261121
_rng = random.Random(_SEED)
UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


def _t(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _b64(n: int) -> str:
    return base64.b64encode(bytes(_rng.getrandbits(8) for _ in range(n))).decode()


def _jwt() -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    body = base64.urlsafe_b64encode(b'{"sub":"1234567890","name":"Agent","iat":1731000000}').decode().rstrip("=")
    return f"{header}.{body}.{_t(URLSAFE, 43)}"


def _pem(label: str) -> str:
    lines = [_b64(48) for _ in range(6)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


@dataclass(frozen=True)
class Planted:
    name: str
    secret: str  # the exact value that must never reach the disk
    message: dict  # where it sits: a realistic agent message or tool output


def _msg(role: str, content: str, **extra: object) -> dict:
    return {"role": role, "content": content, **extra}


def secret_corpus() -> list[Planted]:
    """The same secrets on every call (tests compare values built in separate calls)."""
    _rng.seed(_SEED)
    s = {
        "aws-akia": "AKIA" + _t(UPPER_DIGITS, 16),
        "aws-asia": "ASIA" + _t(UPPER_DIGITS, 16),
        "aws-secret": _t(ALNUM + "/+", 40),
        "gh-ghp": "ghp_" + _t(ALNUM, 36),
        "gh-gho": "gho_" + _t(ALNUM, 36),
        "gh-ghs": "ghs_" + _t(ALNUM, 36),
        "gh-pat": "github_pat_" + _t(ALNUM, 22) + "_" + _t(ALNUM, 59),
        "openai-legacy": "sk-" + _t(ALNUM, 20) + "T3BlbkFJ" + _t(ALNUM, 20),
        "openai-proj": "sk-proj-" + _t(URLSAFE, 120),
        "openai-svc": "sk-svcacct-" + _t(URLSAFE, 64),
        "anthropic": "sk-ant-api03-" + _t(URLSAFE, 93) + "AA",
        "anthropic-admin": "sk-ant-admin01-" + _t(URLSAFE, 93) + "AA",
        "slack-bot": "xoxb-" + _t(string.digits, 12) + "-" + _t(string.digits, 13) + "-" + _t(ALNUM, 24),
        "slack-user": "xoxp-" + _t(string.digits, 12) + "-" + _t(string.digits, 12) + "-" + _t(ALNUM, 32),
        "slack-webhook": "https://hooks.slack.com/services/T" + _t(UPPER_DIGITS, 8) + "/B" + _t(UPPER_DIGITS, 10)
        + "/" + _t(ALNUM, 24),
        "slack-app": "xapp-1-A" + _t(UPPER_DIGITS, 10) + "-" + _t(string.digits, 13) + "-" + _t("0123456789abcdef", 64),
        "google": "AIza" + _t(URLSAFE, 35),
        "stripe-live": "sk_live_" + _t(ALNUM, 99),
        "stripe-restricted": "rk_live_" + _t(ALNUM, 99),
        "stripe-test": "sk_test_" + _t(ALNUM, 24),
        "stripe-webhook": "whsec_" + _t(ALNUM, 32),
        "jwt": _jwt(),
        "pem-rsa": _pem("RSA PRIVATE KEY"),
        "pem-openssh": _pem("OPENSSH PRIVATE KEY"),
        "pem-ec": _pem("EC PRIVATE KEY"),
        "pem-pkcs8": _pem("PRIVATE KEY"),
        "env-password": "Pg" + _t(ALNUM, 10) + "!9",
        "json-password": "s3cr3t-" + _t(ALNUM, 8),
        "query-api-key": _t(ALNUM, 32),
        "bearer": _t(URLSAFE, 40),
        "basic": base64.b64encode(b"deploy:" + _t(ALNUM, 16).encode()).decode(),
        "db-url-password": "Zq" + _t(ALNUM, 12) + "7",
        "spoken-password": "Tr0ub4dor&" + _t(string.digits, 3),
        "yaml-client-secret": _t(ALNUM, 40),
        "x-api-key": _t(ALNUM, 36),
        "bearer-plain": _t(URLSAFE, 32),
    }
    m = [
        Planted("aws-akia", s["aws-akia"], _msg("tool", f"$ env | grep AWS\nAWS_ACCESS_KEY_ID={s['aws-akia']}\nAWS_REGION=eu-west-1\n", name="shell")),
        Planted("aws-asia", s["aws-asia"], _msg("tool", f'{{"Credentials": {{"AccessKeyId": "{s["aws-asia"]}", "Expiration": "2026-11-21T18:00:00Z"}}}}', name="aws-sts")),
        Planted("aws-secret", s["aws-secret"], _msg("tool", f"[default]\naws_access_key_id = {s['aws-akia']}\naws_secret_access_key = {s['aws-secret']}\n", name="read_file")),
        Planted("gh-ghp", s["gh-ghp"], _msg("user", f"use my token {s['gh-ghp']} to open the PR please")),
        Planted("gh-gho", s["gh-gho"], _msg("tool", f"Logged in to github.com as octocat (oauth_token: {s['gh-gho']})", name="gh")),
        Planted("gh-ghs", s["gh-ghs"], _msg("tool", f"GITHUB_TOKEN={s['gh-ghs']}\nCI=true", name="shell")),
        Planted("gh-pat", s["gh-pat"], _msg("assistant", f"I'll configure the remote with the fine-grained token {s['gh-pat']}.")),
        Planted("openai-legacy", s["openai-legacy"], _msg("tool", f"export OPENAI_API_KEY='{s['openai-legacy']}'", name="shell")),
        Planted("openai-proj", s["openai-proj"], _msg("tool", f"client = OpenAI(api_key=\"{s['openai-proj']}\")", name="read_file")),
        Planted("openai-svc", s["openai-svc"], _msg("user", f"the service account key is {s['openai-svc']}")),
        Planted("anthropic", s["anthropic"], _msg("tool", f"ANTHROPIC_API_KEY={s['anthropic']}", name="shell")),
        Planted("anthropic-admin", s["anthropic-admin"], _msg("tool", f"curl https://api.anthropic.com/v1/organizations -H 'x-api-key: {s['anthropic-admin']}'", name="shell")),
        Planted("slack-bot", s["slack-bot"], _msg("tool", f"SLACK_BOT_TOKEN={s['slack-bot']}", name="shell")),
        Planted("slack-user", s["slack-user"], _msg("user", f"here's my slack user token: {s['slack-user']}")),
        Planted("slack-webhook", s["slack-webhook"], _msg("tool", f'{{"alerting": {{"webhook": "{s["slack-webhook"]}"}}}}', name="read_file")),
        Planted("slack-app", s["slack-app"], _msg("tool", f"SLACK_APP_TOKEN={s['slack-app']}", name="shell")),
        Planted("google", s["google"], _msg("tool", f"<script src=\"https://maps.googleapis.com/maps/api/js?key={s['google']}\"></script>", name="fetch")),
        Planted("stripe-live", s["stripe-live"], _msg("user", f"Stripe live key: {s['stripe-live']} (rotate after)")),
        Planted("stripe-restricted", s["stripe-restricted"], _msg("tool", f"STRIPE_RESTRICTED_KEY={s['stripe-restricted']}", name="shell")),
        Planted("stripe-test", s["stripe-test"], _msg("tool", f"stripe.api_key = \"{s['stripe-test']}\"", name="read_file")),
        Planted("stripe-webhook", s["stripe-webhook"], _msg("tool", f"Ready! Your webhook signing secret is {s['stripe-webhook']} (^C to quit)", name="stripe-cli")),
        Planted("jwt", s["jwt"], _msg("tool", f"HTTP/1.1 200 OK\nSet-Cookie: session={s['jwt']}; HttpOnly", name="http")),
        Planted("pem-rsa", s["pem-rsa"], _msg("tool", f"$ cat deploy/id_rsa\n{s['pem-rsa']}\n", name="shell")),
        Planted("pem-openssh", s["pem-openssh"], _msg("tool", s["pem-openssh"], name="read_file")),
        Planted("pem-ec", s["pem-ec"], _msg("assistant", f"The TLS key in the repo is:\n```\n{s['pem-ec']}\n```\nIt should not be committed.")),
        Planted("pem-pkcs8", s["pem-pkcs8"], _msg("tool", f'{{"private_key": "{s["pem-pkcs8"]}"}}', name="gcloud")),
        Planted("env-password", s["env-password"], _msg("tool", f"DB_HOST=db.internal\nDB_PASSWORD={s['env-password']}\nDB_PORT=5432", name="shell")),
        Planted("json-password", s["json-password"], _msg("tool", f'{{"username": "admin", "password": "{s["json-password"]}"}}', name="read_file")),
        Planted("query-api-key", s["query-api-key"], _msg("tool", f"GET https://api.weather.example/v1/today?city=Oslo&api_key={s['query-api-key']} 200", name="http")),
        Planted("bearer", s["bearer"], _msg("tool", f"curl -s -H \"Authorization: Bearer {s['bearer']}\" https://api.example.com/v1/me", name="shell")),
        Planted("basic", s["basic"], _msg("tool", f"> GET /admin HTTP/1.1\n> Authorization: Basic {s['basic']}\n", name="http")),
        Planted("db-url-password", s["db-url-password"], _msg("tool", f"DATABASE_URL=postgres://app:{s['db-url-password']}@db.internal:5432/app", name="shell")),
        Planted("spoken-password", s["spoken-password"], _msg("user", f"my password is {s['spoken-password']} if you need to log in")),
        Planted("yaml-client-secret", s["yaml-client-secret"], _msg("tool", f"oauth:\n  client_id: web-app\n  client_secret: {s['yaml-client-secret']}\n", name="read_file")),
        Planted("bearer-plain", s["bearer-plain"], _msg("user", f"the staging API wants Bearer {s['bearer-plain']} in every call")),
        Planted("x-api-key", s["x-api-key"], _msg("tool", f"x-api-key: {s['x-api-key']}\ncontent-type: application/json", name="http")),
    ]
    return m


def benign_corpus() -> list[str]:
    """Strings that look technical but hold no credential."""
    rng = random.Random(7)
    png = base64.b64encode(bytes([0x89, 0x50, 0x4E, 0x47]) + bytes(rng.getrandbits(8) for _ in range(3000))).decode()
    items: list[str] = []
    items += [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(10)]
    items += [hashlib.sha1(str(i).encode()).hexdigest() for i in range(10)]  # git SHAs
    items += [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    items += [
        f"data:image/png;base64,{png}",
        f'<img alt="chart" src="data:image/png;base64,{png[:800]}">',
        "sha512-" + base64.b64encode(hashlib.sha512(b"left-pad").digest()).decode(),
        "docker.io/library/python@sha256:" + hashlib.sha256(b"python").hexdigest(),
        "commit 3f9c2a1b7d4e5f60718293a4b5c6d7e8f9012345\nAuthor: Ada <ada@example.com>\n\n    Fix login flow",
        "def login(username: str, password: str) -> bool:\n    return check_password(username, password)",
        "password = getpass.getpass('Password: ')\nif password != confirm_password:\n    raise ValueError('mismatch')",
        "token = request.headers.get('Authorization')\napi_key = os.environ['API_KEY']",
        "const apiKey = process.env.OPENAI_API_KEY;\nconst client = new OpenAI({ apiKey });",
        "func Auth(token string) error { if token == \"\" { return ErrNoToken }; return nil }",
        "DB_PASSWORD=${DB_PASSWORD}\nAPI_KEY=<your-api-key>\nSECRET=changeme",
        "password: ********\napi_key: REDACTED",
        "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db\n        key: password",
        '{"model": "gpt-4o", "max_tokens": 1024, "usage": {"prompt_tokens": 523, "completion_tokens": 88}}',
        '{"next_token": null, "items": [], "password": ""}',
        "PWD=/home/alice/project\nOLDPWD=/home/alice\nHOME=/home/alice\nPATH=/usr/local/bin:/usr/bin",
        "pwd = os.getcwd()\nprint(pwd)",
        "$ ls -la\n-rw-r--r-- 1 alice staff 2048 Nov 21 10:00 secrets.yaml\n-rw-r--r-- 1 alice staff 512 Nov 21 10:00 README.md",
        "2026-11-21T10:00:00Z INFO request_id=7f3e9c1a user=alice latency_ms=42 status=200 path=/api/v1/items",
        "https://github.com/acme/app/pull/4711/files#diff-3f9c2a1b7d4e5f60718293a4b5c6d7e8",
        "https://example.com/search?q=password+reset&page=2",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUEXAMPLE\n-----END CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEXAMPLE\n-----END PUBLIC KEY-----",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtQ0bOlcm9ySm2sM8V1bm5lZWRlZGZvcmV4YW1wbGU alice@laptop",
        "The user forgot their password and asked for a reset link.",
        "Your password is incorrect. Please try again.",
        "import sklearn\nfrom sklearn.ensemble import RandomForestClassifier",
        "color: #3f9c2a; background: #1b7d4e; border-color: rgba(0,0,0,0.5);",
        "SELECT id, email FROM users WHERE password_hash = crypt($1, password_hash);",
        "Use `Authorization: Bearer <token>` with the token from the dashboard.",
        "bearer of bad news: the build failed on step 3",
        base64.b64encode(b"The quick brown fox jumps over the lazy dog. " * 4).decode(),
        "The tokenizer splits 'unbelievable' into three tokens.",
        "refresh_token_expiry_seconds: 86400\naccess_token_ttl: 3600",
        "db:\n  password: vault:prod/db-password\n  secret: env:AWS_SECRET_ACCESS_KEY",
    ]
    return items
