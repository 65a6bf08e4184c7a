"""Test corpora: real-format fake secrets inside agent messages, and benign look-alikes.

Secrets are generated from a fixed seed (so no credential-shaped literal sits in the repo
for scanners to trip on) and every one is fake. Each planted secret has a `kind` (its
credential format; `corpus_kinds` counts them). The benign corpus is partly generated, from
its own seeds: ids, hashes, blobs, lockfiles, logs, code, configs with placeholders, prose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections import Counter
from dataclasses import dataclass, replace

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
    kind: str = ""  # the credential format; several planted secrets share one kind


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
    m = [replace(p, kind=_FIRST_KINDS[p.name]) for p in m]
    return m + _more_planted()  # generated after the entries above, whose values do not move


def corpus_kinds(planted: list[Planted]) -> Counter[str]:
    """Planted secrets per kind."""
    return Counter(p.kind for p in planted)


_FIRST_KINDS = {
    "aws-akia": "aws-access-key-id", "aws-asia": "aws-access-key-id", "aws-secret": "aws-secret-access-key",
    "gh-ghp": "github-token", "gh-gho": "github-token", "gh-ghs": "github-token", "gh-pat": "github-pat",
    "openai-legacy": "openai-key", "openai-proj": "openai-key", "openai-svc": "openai-key",
    "anthropic": "anthropic-key", "anthropic-admin": "anthropic-key", "slack-bot": "slack-token",
    "slack-user": "slack-token", "slack-webhook": "slack-webhook", "slack-app": "slack-app-token",
    "google": "google-api-key", "stripe-live": "stripe-key", "stripe-restricted": "stripe-key",
    "stripe-test": "stripe-key", "stripe-webhook": "stripe-webhook-secret", "jwt": "jwt",
    "pem-rsa": "pem-private-key", "pem-openssh": "pem-private-key", "pem-ec": "pem-private-key",
    "pem-pkcs8": "pem-private-key", "env-password": "password-assignment", "json-password": "password-assignment",
    "query-api-key": "api-key-in-url", "bearer": "bearer-token", "basic": "basic-auth",
    "db-url-password": "connection-string", "spoken-password": "password-in-prose",
    "yaml-client-secret": "client-secret", "bearer-plain": "bearer-token", "x-api-key": "api-key-header",
}
HEX = "0123456789abcdef"
LOWER_DIGITS = string.ascii_lowercase + string.digits
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l".upper()
# Passphrases are made of words, like the ones people pick ("correct horse battery staple").
_WORDS = ("velvet", "orbit", "canyon", "maple", "harbor", "lantern", "quartz", "meadow", "falcon",
          "ember", "willow", "cobalt", "tundra", "saffron", "glacier", "pepper", "thistle", "marble")


def _hex(n: int) -> str:
    return _t(HEX, n)


def _uuid() -> str:
    return str(uuid.UUID(int=_rng.getrandbits(128)))


def _passphrase(words: int) -> str:
    return "".join(_rng.sample(_WORDS, words))


def _url_b64(n: int) -> str:
    """A base64 signature as it appears URL-encoded in a query string."""
    return _b64(n).replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


def _more_planted() -> list[Planted]:
    """Formats the first review found missed, plus more vendor formats (gitleaks/trufflehog facts)."""
    n = {
        "npm-npmrc": "npm_" + _t(ALNUM, 36),
        "npm-ci-env": "npm_" + _t(ALNUM, 36),
        "pypi-pypirc": "pypi-AgEIcHlwaS5vcmc" + _t(URLSAFE, 160),
        "pypi-twine-env": "pypi-AgENdGVzdC5weXBpLm9yZw" + _t(URLSAFE, 150),
        "gitlab-pat": "glpat-" + _t(URLSAFE, 20),
        "gitlab-pat-routable": "glpat-" + _t(URLSAFE, 27) + "." + _t(LOWER_DIGITS, 9),
        "gitlab-deploy": "gldt-" + _t(URLSAFE, 20),
        "gitlab-runner": "glrt-" + _t(URLSAFE, 20),
        "gitlab-trigger": "glptt-" + _hex(40),
        "gitlab-scim": "glsoat-" + _t(URLSAFE, 20),
        "gitlab-registration": "GR1348941" + _t(URLSAFE, 20),
        "gitlab-job": "glcbt-" + _t(ALNUM, 2) + "_" + _t(URLSAFE, 20),
        "gitlab-feed": "glft-" + _t(URLSAFE, 20),
        "hf-token": "hf_" + _t(string.ascii_letters, 34),
        "hf-org": "api_org_" + _t(string.ascii_letters, 34),
        "sendgrid": "SG." + _t(URLSAFE, 22) + "." + _t(URLSAFE, 43),
        "azure-account-key": _b64(64),
        "azure-servicebus-key": _b64(32),
        "azure-sas-url": _url_b64(32),
        "azure-sas-connstr": _url_b64(32),
        "google-oauth-secret": "GOCSPX-" + _t(URLSAFE, 28),
        "vault-hvs": "hvs.CAESI" + _t(URLSAFE, 86),
        "vault-hvs-dev": "hvs." + _t(ALNUM, 24),
        "vault-hvb": "hvb.AAAAAQ" + _t(URLSAFE, 150),
        "vault-hvr": "hvr." + _t(ALNUM, 24),
        "do-pat": "dop_v1_" + _hex(64),
        "do-oauth": "doo_v1_" + _hex(64),
        "do-refresh": "dor_v1_" + _hex(64),
        "passphrase-env": _passphrase(4),
        "passphrase-yaml": _passphrase(3),
        "passphrase-json": _passphrase(4),
        "passphrase-flask": _passphrase(3),
        "weak-default-password": "changeme",  # a real (weak) password, not a placeholder
        "sts-secret": _t(ALNUM + "/+", 40),
        "sts-session": "IQoJb3JpZ2luX2VjE" + _t(ALNUM + "/+", 700) + "==",
        "docker-auth": base64.b64encode(b"robot$ci:" + _t(ALNUM, 32).encode()).decode(),
        "gcp-sa-key": json.dumps(_pem("PRIVATE KEY"))[1:-1],  # as it sits inside the JSON file
        "kube-bootstrap": _t(LOWER_DIGITS, 6) + "." + _t(LOWER_DIGITS, 16),
        "kube-rancher": "kubeconfig-u-" + _t(LOWER_DIGITS, 10) + ":" + _t(LOWER_DIGITS, 54),
        "kube-client-key": base64.b64encode(_pem("RSA PRIVATE KEY").encode()).decode(),
        "npmrc-generic": _uuid(),
        "npmrc-auth-b64": base64.b64encode(b"deploy:" + _t(ALNUM, 20).encode()).decode(),
        "pypirc-private": "Nx" + _t(ALNUM, 14) + "#4",
        "netrc-line": _t(ALNUM, 20),
        "netrc-multi": _t(ALNUM, 12) + "!%" + _t(ALNUM, 4),
        "conn-postgresql": _t(ALNUM, 18),
        "conn-mysql": _t(ALNUM, 16),
        "conn-mongo": _t(ALNUM, 20),
        "conn-redis": _t(ALNUM, 24),
        "conn-amqp": _t(ALNUM, 16),
        "conn-unencoded-at": "p@" + _t(ALNUM, 12),
        "api-key-header-letters": _t(string.ascii_letters, 40),
        "client-secret-json": _t(URLSAFE, 64),
        "shopify": "shpat_" + _hex(32),
        "age": "AGE-SECRET-KEY-1" + _t(BECH32, 58),
        "databricks": "dapi" + _hex(32),
        "doppler": "dp.pt." + _t(ALNUM, 43),
        "linear": "lin_api_" + _t(ALNUM, 40),
        "postman": "PMAK-" + _hex(24) + "-" + _hex(34),
        "grafana-cloud": "glc_" + _b64(60),
        "grafana-sa": "glsa_" + _t(ALNUM, 32) + "_" + _hex(8),
        "sentry": "sntryu_" + _hex(64),
        "pulumi": "pul-" + _hex(40),
        "rubygems": "rubygems_" + _hex(48),
        "planetscale": "pscale_pw_" + _t(URLSAFE, 43),
        "notion": "ntn_" + _t(string.digits, 11) + _t(ALNUM, 35),
        "groq": "gsk_" + _t(ALNUM, 52),
        "xai": "xai-" + _t(ALNUM, 80),
        "replicate": "r8_" + _t(ALNUM, 37),
        "langsmith": "lsv2_pt_" + _hex(32) + "_" + _hex(10),
        "perplexity": "pplx-" + _t(ALNUM, 48),
        "pinecone": "pcsk_" + _t(ALNUM, 6) + "_" + _t(ALNUM, 63),
        "onepassword": "ops_eyJ" + _t(ALNUM + "+/", 300),
        "heroku": "HRKU-AA" + _t(URLSAFE, 58),
        "discord-webhook": "https://discord.com/api/webhooks/" + _t(string.digits, 19) + "/" + _t(URLSAFE, 68),
        "gh-ghu": "ghu_" + _t(ALNUM, 36),
        "gh-ghr": "ghr_" + _t(ALNUM, 36),
        "openrouter": "sk-or-v1-" + _hex(64),
        "kube-sa-jwt": _jwt(),
        "vault-accessor": _t(ALNUM, 24),
        "vault-unseal-dev": _b64(32),
        "vault-unseal-init": _b64(33),
        "vault-unseal-init-2": _b64(33),
        "vault-root-init": "hvs." + _t(ALNUM, 24),
        "slack-bot-json": "xoxb-" + _t(string.digits, 12) + "-" + _t(string.digits, 13) + "-" + _t(ALNUM, 24),
        "aws-akia-csv": "AKIA" + _t(UPPER_DIGITS, 16),
        "aws-secret-csv": _t(ALNUM + "/+", 40),
        "password-cli-json": "hX" + _t(ALNUM, 12) + "$2",
        "api-token-toml": _t(ALNUM, 32),
        "php-db-password": "Wq" + _t(ALNUM, 10) + "%8",
        "ini-password": "Lm" + _t(ALNUM, 12) + "-5",
        "spoken-passcode": "Kd" + _t(ALNUM, 8) + "!7",
    }
    # (kind, name, content, role/tool). Every message is what an agent would see or say.
    rows: list[tuple[str, str, str, str]] = [
        ("npm-token", "npm-npmrc", f"$ cat ~/.npmrc\n//registry.npmjs.org/:_authToken={n['npm-npmrc']}\n"
         "fund=false\naudit=false\n", "shell"),
        ("npm-token", "npm-ci-env", f"Run npm publish --access public\n  env:\n    NODE_AUTH_TOKEN: {n['npm-ci-env']}\n"
         "npm notice Publishing to https://registry.npmjs.org/ with tag latest", "ci-log"),
        ("pypi-token", "pypi-pypirc", f"[distutils]\nindex-servers =\n    pypi\n\n[pypi]\nusername = __token__\n"
         f"password = {n['pypi-pypirc']}\n", "read_file"),
        ("pypi-token", "pypi-twine-env", f"$ TWINE_USERNAME=__token__ TWINE_PASSWORD={n['pypi-twine-env']} twine upload "
         "--repository testpypi dist/*\nUploading distributions to https://test.pypi.org/legacy/", "shell"),
        ("gitlab-token", "gitlab-pat", f"$ git remote -v\norigin  https://oauth2:{n['gitlab-pat']}@gitlab.com/acme/infra.git "
         "(fetch)", "shell"),
        ("gitlab-token", "gitlab-pat-routable", f"I created a project access token for the release bot: {n['gitlab-pat-routable']}"
         " (expires in 30 days, scope api)", "assistant"),
        ("gitlab-token", "gitlab-deploy", f"$ echo {n['gitlab-deploy']} | docker login registry.gitlab.com -u gitlab+deploy-token-42 "
         "--password-stdin\nLogin Succeeded", "shell"),
        ("gitlab-token", "gitlab-runner", f'concurrent = 4\n\n[[runners]]\n  name = "build-01"\n  url = "https://gitlab.com"\n'
         f'  token = "{n["gitlab-runner"]}"\n  executor = "docker"\n', "read_file"),
        ("gitlab-token", "gitlab-trigger", f"curl -X POST --fail -F token={n['gitlab-trigger']} -F ref=main "
         "https://gitlab.com/api/v4/projects/4711/trigger/pipeline", "shell"),
        ("gitlab-token", "gitlab-scim", f'{{"id": 17, "name": "okta-scim", "token": "{n["gitlab-scim"]}", "created_at": '
         '"2026-11-20T09:12:44Z"}', "http"),
        ("gitlab-token", "gitlab-registration", f"sudo gitlab-runner register --non-interactive --url https://gitlab.example.com "
         f"--registration-token {n['gitlab-registration']} --executor shell", "shell"),
        ("gitlab-token", "gitlab-job", f"$ printenv | sort | grep CI_\nCI_COMMIT_SHA=3f9c2a1b7d4e5f60718293a4b5c6d7e8f9012345\n"
         f"CI_JOB_TOKEN={n['gitlab-job']}\nCI_PIPELINE_ID=99812", "ci-log"),
        ("gitlab-token", "gitlab-feed", f"Subscribe to the activity feed: https://gitlab.com/acme.atom?feed_token={n['gitlab-feed']}",
         "user"),
        ("huggingface-token", "hf-token", f"$ huggingface-cli login --token {n['hf-token']}\nToken is valid (permission: write).\n"
         "Login successful", "shell"),
        ("huggingface-token", "hf-org", f"from huggingface_hub import HfApi\napi = HfApi(token=\"{n['hf-org']}\")\n"
         "api.upload_folder(folder_path='out', repo_id='acme/model')", "read_file"),
        ("sendgrid-key", "sendgrid", f"import sendgrid\nsg = sendgrid.SendGridAPIClient('{n['sendgrid']}')\n"
         "response = sg.send(message)", "read_file"),
        ("azure-storage-key", "azure-account-key", "$ az storage account show-connection-string -n acmelogs\n"
         f'{{"connectionString": "DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey={n["azure-account-key"]};'
         'EndpointSuffix=core.windows.net"}', "shell"),
        ("azure-service-bus-key", "azure-servicebus-key", "SERVICEBUS_CONNECTION=Endpoint=sb://acme-bus.servicebus.windows.net/;"
         f"SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={n['azure-servicebus-key']}\nQUEUE=orders", "shell"),
        ("sas-signature", "azure-sas-url", "Here is the download link (valid 1h): https://acmelogs.blob.core.windows.net/exports/"
         f"report.csv?sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-11-21T11:00:00Z&spr=https&sig={n['azure-sas-url']}", "assistant"),
        ("sas-signature", "azure-sas-connstr", "BlobEndpoint=https://acmelogs.blob.core.windows.net/;SharedAccessSignature="
         f"sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&se=2026-12-01T00:00:00Z&st=2026-11-20T00:00:00Z&spr=https&sig={n['azure-sas-connstr']}",
         "read_file"),
        ("google-oauth-client-secret", "google-oauth-secret", '{"installed": {"client_id": "381046628811-'
         'k3j2h1g0f9e8d7c6b5a4.apps.googleusercontent.com", "project_id": "acme-cli", "auth_uri": '
         f'"https://accounts.google.com/o/oauth2/auth", "client_secret": "{n["google-oauth-secret"]}", '
         '"redirect_uris": ["http://localhost"]}}', "read_file"),
        ("vault-token", "vault-hvs", f"$ vault login -method=oidc\nSuccess! You are now authenticated.\n\nKey                  Value\n"
         f"---                  -----\ntoken                {n['vault-hvs']}\ntoken_accessor       "
         f"{n['vault-accessor']}\ntoken_duration       768h", "shell"),
        ("vault-token", "vault-hvs-dev", "==> Vault server started! Log data will stream in below:\nWARNING! dev mode is enabled!\n"
         f"Unseal Key: {n['vault-unseal-dev']}\nRoot Token: {n['vault-hvs-dev']}", "shell"),
        ("vault-unseal-key", "vault-unseal-dev", "", "shell"),  # the Unseal Key line of the message above
        ("vault-unseal-key", "vault-unseal-init", f"$ vault operator init -key-shares=3 -key-threshold=2\n"
         f"Unseal Key 1: {n['vault-unseal-init']}\nUnseal Key 2: {n['vault-unseal-init-2']}\n\nInitial Root Token: "
         f"{n['vault-root-init']}\n\nVault initialized with 3 key shares and a key threshold of 2.", "shell"),
        ("vault-unseal-key", "vault-unseal-init-2", "", "shell"),
        ("vault-token", "vault-root-init", "", "shell"),
        ("vault-token", "vault-hvb", f'{{"auth": {{"client_token": "{n["vault-hvb"]}", "policies": ["default", "ci"], '
         '"lease_duration": 1200, "renewable": false}}', "http"),
        ("vault-token", "vault-hvr", f"Generated a recovery operation token: {n['vault-hvr']} (use it with "
         "`vault operator raft snapshot restore`)", "assistant"),
        ("digitalocean-token", "do-pat", f"$ cat ~/.config/doctl/config.yaml\naccess-token: {n['do-pat']}\ncontext: default\n"
         "output: text", "shell"),
        ("digitalocean-token", "do-oauth", f'{{"access_token": "{n["do-oauth"]}", "token_type": "bearer", '
         '"expires_in": 2592000, "scope": "read write"}', "http"),
        ("digitalocean-token", "do-refresh", f"doctl auth init --context ci --access-token {n['do-refresh']}", "shell"),
        ("letters-passphrase", "passphrase-env", f"$ cat .env\nDB_HOST=localhost\ndb_password={n['passphrase-env']}\nDB_NAME=app\n",
         "shell"),
        ("letters-passphrase", "passphrase-yaml", f"services:\n  db:\n    image: postgres:16\n    environment:\n"
         f"      POSTGRES_USER: app\n      POSTGRES_PASSWORD: {n['passphrase-yaml']}\n", "read_file"),
        ("letters-passphrase", "passphrase-json", f'{{"host": "smtp.acme.io", "port": 587, "user": "alerts", '
         f'"password": "{n["passphrase-json"]}"}}', "read_file"),
        ("letters-passphrase", "passphrase-flask", f"app = Flask(__name__)\napp.config['DEBUG'] = False\n"
         f"SECRET_KEY = '{n['passphrase-flask']}'\n", "read_file"),
        ("letters-passphrase", "weak-default-password", f"$ grep -n PASSWORD deploy/.env\n3:DB_PASSWORD="
         f"{n['weak-default-password']}\n", "shell"),
        ("aws-sts-credentials", "sts-secret", "$ aws sts assume-role --role-arn arn:aws:iam::123456789012:role/deploy "
         f'--role-session-name ci\n{{\n    "Credentials": {{\n        "AccessKeyId": "ASIA{_t(UPPER_DIGITS, 16)}",\n'
         f'        "SecretAccessKey": "{n["sts-secret"]}",\n        "Expiration": "2026-11-21T12:00:00Z"\n    }}\n}}', "shell"),
        ("aws-session-token", "sts-session", f'{{"Credentials": {{"SessionToken": "{n["sts-session"]}", '
         '"Expiration": "2026-11-21T12:00:00+00:00"}}, "AssumedRoleUser": {"Arn": "arn:aws:sts::123456789012:'
         'assumed-role/deploy/ci"}}', "aws-sts"),
        ("docker-auth", "docker-auth", f'$ cat ~/.docker/config.json\n{{\n  "auths": {{\n    "ghcr.io": {{\n'
         f'      "auth": "{n["docker-auth"]}"\n    }}\n  }},\n  "credsStore": ""\n}}', "shell"),
        ("gcp-service-account-key", "gcp-sa-key", f'{{"type": "service_account", "project_id": "acme-prod", "private_key_id": '
         f'"{_hex(40)}", "private_key": "{n["gcp-sa-key"]}\\n", "client_email": "deploy@acme-prod.iam.gserviceaccount.com"}}',
         "read_file"),
        ("kubeconfig-token", "kube-bootstrap", f"apiVersion: v1\nkind: Config\nusers:\n- name: kubelet-bootstrap\n  user:\n"
         f"    token: {n['kube-bootstrap']}\n", "read_file"),
        ("kubeconfig-token", "kube-rancher", f"users:\n- name: \"rancher-prod\"\n  user:\n    token: \"{n['kube-rancher']}\"\n",
         "read_file"),
        ("kubeconfig-token", "kube-sa-jwt", f"$ kubectl config view --raw --minify\nusers:\n- name: ci-deployer\n  user:\n"
         f"    token: {n['kube-sa-jwt']}\n", "shell"),
        ("kubeconfig-client-key", "kube-client-key", f"users:\n- name: admin@prod\n  user:\n    client-certificate-data: "
         f"{base64.b64encode(b'-----BEGIN CERTIFICATE-----').decode()}\n    client-key-data: {n['kube-client-key']}\n",
         "read_file"),
        ("npmrc-auth-token", "npmrc-generic", f"@acme:registry=https://npm.pkg.acme.dev/\n"
         f"//npm.pkg.acme.dev/:_authToken={n['npmrc-generic']}\nalways-auth=true", "read_file"),
        ("npmrc-auth-token", "npmrc-auth-b64", f"registry=https://artifactory.acme.dev/api/npm/npm/\n_auth={n['npmrc-auth-b64']}\n"
         "email=ci@acme.dev", "read_file"),
        ("pypirc-password", "pypirc-private", f"[distutils]\nindex-servers = private\n\n[private]\n"
         f"repository = https://pypi.acme.dev/\nusername = deploy\npassword = {n['pypirc-private']}\n", "read_file"),
        ("netrc-password", "netrc-line", f"$ cat ~/.netrc\nmachine api.heroku.com login ops@acme.dev password {n['netrc-line']}\n",
         "shell"),
        ("netrc-password", "netrc-multi", f"machine urs.earthdata.nasa.gov\n    login alice\n    password {n['netrc-multi']}\n",
         "read_file"),
        ("connection-string", "conn-postgresql", f"postgresql://app:{n['conn-postgresql']}@db.acme.internal:5432/app?sslmode=require",
         "read_file"),
        ("connection-string", "conn-mysql", f"$ mysql --version && echo $DATABASE_URL\nmysql  Ver 8.0.36\n"
         f"mysql://root:{n['conn-mysql']}@127.0.0.1:3306/shop", "shell"),
        ("connection-string", "conn-mongo", f"const client = new MongoClient(\"mongodb+srv://admin:{n['conn-mongo']}"
         "@cluster0.ab1cd.mongodb.net/test?retryWrites=true&w=majority\");", "read_file"),
        ("connection-string", "conn-redis", f"CACHE_URL=redis://:{n['conn-redis']}@cache.acme.internal:6379/0", "shell"),
        ("connection-string", "conn-amqp", f"celery worker failed: Cannot connect to amqp://worker:{n['conn-amqp']}"
         "@rabbit.acme.internal:5672//: [Errno 111] Connection refused.", "shell"),
        ("connection-string", "conn-unencoded-at", f"use this url: postgres://report:{n['conn-unencoded-at']}@db.acme.internal/reports",
         "user"),
        ("api-key-header", "api-key-header-letters", f"> GET /v2/forecast HTTP/1.1\n> Host: api.meteo.example\n"
         f"> X-Api-Key: {n['api-key-header-letters']}\n> Accept: */*\n", "http"),
        ("client-secret", "client-secret-json", f'{{"client_id": "8hT2kq0wz", "client_secret": "{n["client-secret-json"]}", '
         '"audience": "https://api.acme.dev", "grant_type": "client_credentials"}', "http"),
        ("shopify-token", "shopify", f"SHOPIFY_ADMIN_TOKEN={n['shopify']}\nSHOPIFY_STORE=acme-dev.myshopify.com", "shell"),
        ("age-secret-key", "age", f"$ age-keygen\n# created: 2026-11-21T10:00:00Z\n# public key: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n"
         f"{n['age']}", "shell"),
        ("databricks-token", "databricks", f"[DEFAULT]\nhost = https://adb-1234567890123456.7.azuredatabricks.net\n"
         f"token = {n['databricks']}\n", "read_file"),
        ("doppler-token", "doppler", f"doppler configure set token {n['doppler']} --scope /home/ci/app", "shell"),
        ("linear-api-key", "linear", f"curl https://api.linear.app/graphql -H 'Authorization: {n['linear']}' "
         "-d '{\"query\": \"{ viewer { id } }\"}'", "shell"),
        ("postman-api-key", "postman", f"newman run collection.json --env-var apiKey={n['postman']}", "shell"),
        ("grafana-token", "grafana-cloud", f"GRAFANA_CLOUD_TOKEN={n['grafana-cloud']}\nGRAFANA_STACK=acme", "shell"),
        ("grafana-token", "grafana-sa", f"provider \"grafana\" {{\n  url  = \"https://acme.grafana.net\"\n"
         f"  auth = \"{n['grafana-sa']}\"\n}}", "read_file"),
        ("sentry-token", "sentry", f"[auth]\ntoken={n['sentry']}\n\n[defaults]\norg=acme", "read_file"),
        ("pulumi-token", "pulumi", f"export PULUMI_ACCESS_TOKEN={n['pulumi']}\npulumi stack select prod", "shell"),
        ("rubygems-token", "rubygems", f"---\n:rubygems_api_key: {n['rubygems']}\n", "read_file"),
        ("planetscale-token", "planetscale", f"DATABASE_PASSWORD={n['planetscale']}\nDATABASE_HOST=aws.connect.psdb.cloud",
         "shell"),
        ("notion-token", "notion", f"const notion = new Client({{ auth: \"{n['notion']}\" }});", "read_file"),
        ("groq-key", "groq", f"I set GROQ_API_KEY to {n['groq']} in your shell profile.", "assistant"),
        ("xai-key", "xai", f"$ env | grep XAI\nXAI_API_KEY={n['xai']}", "shell"),
        ("replicate-token", "replicate", f"replicate = Client(api_token=\"{n['replicate']}\")", "read_file"),
        ("langsmith-key", "langsmith", f"LANGSMITH_TRACING=true\nLANGSMITH_API_KEY={n['langsmith']}\nLANGSMITH_PROJECT=agent",
         "shell"),
        ("perplexity-key", "perplexity", f"here's the perplexity key for the research agent: {n['perplexity']}", "user"),
        ("pinecone-key", "pinecone", f"pc = Pinecone(api_key=\"{n['pinecone']}\")\nindex = pc.Index(\"docs\")", "read_file"),
        ("onepassword-token", "onepassword", f"export OP_SERVICE_ACCOUNT_TOKEN={n['onepassword']}\nop vault list", "shell"),
        ("heroku-key", "heroku", f"$ heroku authorizations:create -d ci\nCreating OAuth Authorization... done\n"
         f"Client:      <none>\nID:          5f2b5a1e-3d2c-4f7a-9b8e-1c0d2e3f4a5b\nDescription: ci\nScope:       global\n"
         f"Token:       {n['heroku']}", "shell"),
        ("discord-webhook", "discord-webhook", f'{{"notify": {{"discord": "{n["discord-webhook"]}"}}}}', "read_file"),
        ("github-token", "gh-ghu", f"{{\"token\": \"{n['gh-ghu']}\", \"expires_at\": \"2026-11-21T18:00:00Z\"}}", "http"),
        ("github-token", "gh-ghr", f"refresh_token={n['gh-ghr']}&expires_in=15811200&scope=&token_type=bearer", "http"),
        ("openrouter-key", "openrouter", f"OPENROUTER_API_KEY=\"{n['openrouter']}\"", "read_file"),
        ("slack-token", "slack-bot-json", f'{{"ok": true, "access_token": "{n["slack-bot-json"]}", "token_type": "bot", '
         '"scope": "chat:write", "team": {"name": "Acme"}}', "http"),
        ("aws-access-key-id", "aws-akia-csv", "User name,Password,Access key ID,Secret access key,Console login link\n"
         f"deploy,,{n['aws-akia-csv']},{n['aws-secret-csv']},https://123456789012.signin.aws.amazon.com/console", "read_file"),
        ("aws-secret-access-key", "aws-secret-csv", "", "read_file"),
        ("password-assignment", "password-cli-json", f'$ acme-cli config show --json\n{{"profile": "prod", "user": "svc-ci", '
         f'"password": "{n["password-cli-json"]}", "region": "eu-west-1"}}', "shell"),
        ("api-token-assignment", "api-token-toml", f'[tool.acme]\nendpoint = "https://api.acme.dev"\napi_token = "{n["api-token-toml"]}"\n',
         "read_file"),
        ("password-assignment", "php-db-password", f"<?php\n$db_host = 'localhost';\n$db_password = '{n['php-db-password']}';\n"
         "$conn = new mysqli($db_host, 'app', $db_password);", "read_file"),
        ("password-assignment", "ini-password", f"[database]\nhost = db.acme.internal\nuser = app\npassword: {n['ini-password']}\n",
         "read_file"),
        ("password-in-prose", "spoken-passcode", f"The wifi passcode is {n['spoken-passcode']} and the guest network is open.", "user"),
    ]
    planted: list[Planted] = []
    for kind, name, content, role_or_tool in rows:
        # An empty content: the secret sits in the message of the row before (several per output).
        message = _message(role_or_tool, content) if content else planted[-1].message
        planted.append(Planted(name, n[name], message, kind))
    return planted


def _message(role_or_tool: str, content: str) -> dict:
    if role_or_tool in ("user", "assistant"):
        return _msg(role_or_tool, content)
    return _msg("tool", content, name=role_or_tool)


# --- benign corpus generators ------------------------------------------------------------------
# The example credentials of the AWS documentation (every scanner knows them as examples).
AWS_DOCS_KEY_ID = "AKIA" + "IOSFODNN7" + "EXAMPLE"
AWS_DOCS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
_PACKAGES = ("left-pad", "lodash", "react", "express", "chalk", "debug", "ms", "semver", "uuid", "axios",
             "zod", "yargs", "minimist", "commander", "dotenv", "jsonwebtoken", "bcrypt", "passport")
_CRATES = ("serde", "tokio", "rand", "regex", "anyhow", "thiserror", "clap", "hyper", "ring", "base64")
_PYPI = ("requests", "urllib3", "certifi", "idna", "charset-normalizer", "pydantic", "cryptography", "orjson",
         "keyring", "passlib")
_WORDS_EN = ("build", "fix", "login", "flow", "cache", "token", "refresh", "retry", "parser", "session",
             "secret", "rotation", "password", "reset", "docs", "typo", "migrate", "schema", "auth", "key")


def _ids_and_hashes(rng: random.Random) -> list[str]:
    def hexs(n: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    items: list[str] = []
    for _ in range(10):
        items.append(json.dumps({"id": str(uuid.UUID(int=rng.getrandbits(128))), "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
                                 "status": "ok"}))
        items.append("{" + str(uuid.UUID(int=rng.getrandbits(128))).upper() + "}")
    for _ in range(12):
        lines = [f"{hexs(7)} {rng.choice(_WORDS_EN)}: {rng.choice(_WORDS_EN)} {rng.choice(_WORDS_EN)}" for _ in range(5)]
        items.append("$ git log --oneline -5\n" + "\n".join(lines))
    for i in range(8):
        items.append(f"$ git rev-parse HEAD\n{hashlib.sha1(f'rev{i}'.encode()).hexdigest()}")
        items.append(f"{hashlib.sha256(f'file{i}'.encode()).hexdigest()}  dist/app-{i}.tar.gz")
        items.append(f"MD5 ({rng.choice(_PACKAGES)}-{i}.tgz) = {hashlib.md5(f'm{i}'.encode()).hexdigest()}")
    for i in range(5):
        items.append(hashlib.sha512(f"blob{i}".encode()).hexdigest())
        items.append(f"ghcr.io/acme/api   v1.{i}.0   sha256:{hashlib.sha256(f'img{i}'.encode()).hexdigest()}   "
                     f"{hexs(12)}   2 days ago   142MB")
        items.append(f'HTTP/1.1 304 Not Modified\nETag: "{hexs(32)}"\nCache-Control: max-age=3600')
        integrity = base64.b64encode(hashlib.sha384(f"js{i}".encode()).digest()).decode()
        items.append(f'<script src="https://cdn.example.com/lib-{i}.min.js" integrity="sha384-{integrity}" '
                     'crossorigin="anonymous"></script>')
        nanoid = "".join(rng.choice(string.ascii_letters + string.digits + "_-") for _ in range(21))
        items.append(json.dumps({"object": "thread", "id": f"thread_{nanoid}", "created_at": 1731000000 + i}))
    items += [f"trace_id={hexs(32)} span_id={hexs(16)} parent_id={hexs(16)} sampled=1" for _ in range(6)]
    return items


def _blobs(rng: random.Random) -> list[str]:
    def raw(n: int) -> bytes:
        return bytes(rng.getrandbits(8) for _ in range(n))

    items: list[str] = []
    for n in (16, 32, 48, 64, 96, 128, 256, 512, 1024, 2048):
        items.append(base64.b64encode(raw(n)).decode())
        items.append(base64.urlsafe_b64encode(raw(n)).decode().rstrip("="))
    items.append(json.dumps({"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                          "data": base64.b64encode(raw(1500)).decode()}}))
    items.append("--boundary42\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
                 + "\n".join(base64.b64encode(raw(57)).decode() for _ in range(12)) + "\n--boundary42--")
    items.append("binaryData:\n  logo.png: " + base64.b64encode(raw(300)).decode())
    items.append("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ" + base64.b64encode(raw(372)).decode().rstrip("=") + " deploy@ci")
    items.append("-----BEGIN CERTIFICATE-----\n" + "\n".join(base64.b64encode(raw(48)).decode() for _ in range(18))
                 + "\n-----END CERTIFICATE-----")
    items.append("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + "\n".join(base64.b64encode(raw(48)).decode() for _ in range(10))
                 + "\n=" + base64.b64encode(raw(3)).decode() + "\n-----END PGP PUBLIC KEY BLOCK-----")
    items.append("-----BEGIN OPENSSH PUBLIC KEY-----\n" + base64.b64encode(raw(60)).decode() + "\n-----END OPENSSH PUBLIC KEY-----")
    items.append(f'{{"ciphertext": "{base64.b64encode(raw(80)).decode()}", "nonce": "{base64.b64encode(raw(12)).decode()}", '
                 f'"tag": "{base64.b64encode(raw(16)).decode()}"}}')
    return items


def _minified_js(rng: random.Random) -> list[str]:
    def ident() -> str:
        return rng.choice(string.ascii_letters) + "".join(rng.choice(string.ascii_letters + "$_") for _ in range(rng.randint(0, 1)))

    items: list[str] = []
    for i in range(14):
        a, b, c, d, e = (ident() for _ in range(5))
        items.append(
            f'!function({a},{b}){{"use strict";var {c}={{token:{b}.token,password:{a}.password,apiKey:{d}.apiKey,'
            f'secret:void 0}};function {e}({a}){{return {a}&&{a}.headers?{a}.headers.Authorization:null}}'
            f'{b}.exports={{login:function({d}){{return fetch("/api/v{i}/login",{{method:"POST",body:JSON.stringify({{'
            f'username:{d}.user,password:{d}.password}})}}).then(function({a}){{return {a}.json()}})}},getToken:{e}}}}}'
            f'(window,module);//# sourceMappingURL=app.{hashlib.md5(str(i).encode()).hexdigest()[:8]}.js.map'
        )
    return items


def _lockfiles(rng: random.Random) -> list[str]:
    def version() -> str:
        return f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}"

    items: list[str] = []
    for name in _PACKAGES[:12]:
        v = version()
        sri = base64.b64encode(hashlib.sha512(f"{name}@{v}".encode()).digest()).decode()
        items.append(f'    "node_modules/{name}": {{\n      "version": "{v}",\n      "resolved": "https://registry.npmjs.org/'
                     f'{name}/-/{name}-{v}.tgz",\n      "integrity": "sha512-{sri}",\n      "dev": true\n    }},')
    for name in _PACKAGES[12:]:
        v = version()
        sri = base64.b64encode(hashlib.sha512(f"y{name}@{v}".encode()).digest()).decode()
        items.append(f'{name}@^{v}:\n  version "{v}"\n  resolved "https://registry.yarnpkg.com/{name}/-/{name}-{v}.tgz#'
                     f'{hashlib.sha1(name.encode()).hexdigest()}"\n  integrity sha512-{sri}')
    for name in _PACKAGES[:4]:
        sri = base64.b64encode(hashlib.sha512(f"p{name}".encode()).digest()).decode()
        items.append(f"  /{name}@{version()}:\n    resolution: {{integrity: sha512-{sri}}}\n    engines: {{node: '>=14'}}\n    dev: false")
    for name in _PYPI[:8]:
        v = version()
        items.append(f'[[package]]\nname = "{name}"\nversion = "{v}"\ndescription = "..."\noptional = false\n'
                     f'python-versions = ">=3.8"\nfiles = [\n    {{file = "{name.replace("-", "_")}-{v}-py3-none-any.whl", '
                     f'hash = "sha256:{hashlib.sha256(f"w{name}".encode()).hexdigest()}"}},\n    {{file = "{name}-{v}.tar.gz", '
                     f'hash = "sha256:{hashlib.sha256(f"s{name}".encode()).hexdigest()}"}},\n]')
    for name in _CRATES[:8]:
        items.append(f'[[package]]\nname = "{name}"\nversion = "{version()}"\nsource = "registry+https://github.com/'
                     f'rust-lang/crates.io-index"\nchecksum = "{hashlib.sha256(f"c{name}".encode()).hexdigest()}"')
    for mod in ("golang.org/x/crypto", "github.com/stretchr/testify", "golang.org/x/oauth2", "github.com/google/uuid",
                "github.com/golang-jwt/jwt/v5", "gopkg.in/yaml.v3"):
        h = base64.b64encode(hashlib.sha256(mod.encode()).digest()).decode()
        items.append(f"{mod} v0.{rng.randint(1, 30)}.0 h1:{h}\n{mod} v0.{rng.randint(1, 30)}.0/go.mod h1:{h[::-1][:43]}=")
    items.append("GEM\n  remote: https://rubygems.org/\n  specs:\n    bcrypt (3.1.20)\n    devise (4.9.3)\n      bcrypt (~> 3.0)\n"
                 "      warden (~> 1.2.3)\n\nCHECKSUMS\n  bcrypt (3.1.20) sha256=" + hashlib.sha256(b"bcrypt").hexdigest())
    items.append(json.dumps({"name": "paragonie/random_compat", "version": "v9.99.100", "dist": {
        "type": "zip", "url": "https://api.github.com/repos/paragonie/random_compat/zipball/996434e5492cb4c3edcb9168db6fbb1359ef965a",
        "shasum": hashlib.sha1(b"rc").hexdigest()}}))
    return items


def _logs(rng: random.Random) -> list[str]:
    def ip() -> str:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))

    def hexs(n: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    paths = ("/api/v1/login", "/api/v1/token/refresh", "/oauth/authorize?client_id=web&response_type=code&state=" ,
             "/password/reset", "/api/v1/secrets", "/healthz", "/static/app.js", "/api/v1/keys?page=2")
    items: list[str] = []
    for i in range(20):
        path = rng.choice(paths)
        if path.endswith("state="):
            path += hexs(16)
        items.append(f'{ip()} - - [21/Nov/2026:10:{i:02d}:07 +0000] "GET {path} HTTP/1.1" {rng.choice((200, 301, 401, 404))} '
                     f'{rng.randint(100, 9000)} "-" "Mozilla/5.0 (X11; Linux x86_64)" rt={rng.random():.3f}')
    for i in range(20):
        items.append(json.dumps({"ts": f"2026-11-21T10:{i:02d}:00.{rng.randint(100, 999)}Z", "level": rng.choice(("info", "warn", "error")),
                                 "msg": rng.choice(("token refreshed", "password reset requested", "secret rotated",
                                                    "api key created", "login failed: invalid password", "session expired")),
                                 "user_id": rng.randint(1000, 99999), "trace_id": hexs(32), "token_type": "bearer",
                                 "expires_in": 3600, "duration_ms": rng.randint(1, 900)}))
    for i in range(10):
        items.append(f"Nov 21 10:{i:02d}:13 web-{i} sshd[{rng.randint(1000, 60000)}]: Failed password for invalid user admin from "
                     f"{ip()} port {rng.randint(1024, 65535)} ssh2")
        items.append(f"Nov 21 10:{i:02d}:14 web-{i} sshd[{rng.randint(1000, 60000)}]: Accepted publickey for deploy from {ip()} "
                     f"port {rng.randint(1024, 65535)} ssh2: ED25519 SHA256:{base64.b64encode(hashlib.sha256(str(i).encode()).digest()).decode().rstrip('=')}")
    for i in range(8):
        items.append(f"{i}s  Warning  FailedMount  pod/api-{hexs(10)}-{hexs(5)}  MountVolume.SetUp failed for volume \"db-password\" : "
                     f"secret \"db-credentials\" not found")
        items.append(f"[{i:02d}:41:07] Step {i}/12 : RUN --mount=type=secret,id=npm_token npm ci\n ---> Using cache\n ---> {hexs(12)}")
    items += [
        "FAILED tests/test_auth.py::test_login_rejects_wrong_password - AssertionError: assert 401 == 200",
        "tests/test_tokens.py::test_refresh_token_rotates PASSED                                      [ 42%]",
        "Traceback (most recent call last):\n  File \"app/auth.py\", line 88, in verify_password\n    return bcrypt.checkpw(password, hashed)\n"
        "ValueError: Invalid salt",
        "jwt.exceptions.ExpiredSignatureError: Signature has expired",
        "WARN  [2026-11-21 10:00:00] TokenBucket: rate limit reached (capacity=100, refill=10/s)",
        "kubectl get secrets -n prod\nNAME             TYPE                             DATA   AGE\ndb-credentials   Opaque                           2      41d\n"
        "registry-auth    kubernetes.io/dockerconfigjson   1      97d\ntls-api          kubernetes.io/tls                2      12d",
        "$ vault kv get -field=password secret/prod/db\nError reading secret/prod/db: permission denied",
        "$ gh auth status\ngithub.com\n  ✓ Logged in to github.com account octocat (keyring)\n  - Active account: true\n"
        "  - Git operations protocol: https\n  - Token: gho_************************************\n  - Token scopes: 'gist', 'read:org', 'repo'",
        "npm ERR! code E401\nnpm ERR! Unable to authenticate, your authentication token seems to be invalid.",
        "error: failed to push some refs: remote: Invalid username or password.",
        "Error: INSTALLATION FAILED: secret \"regcred\" is forbidden: User \"ci\" cannot get resource \"secrets\"",
        "2026/11/21 10:00:00 [warn] 2931#2931: *1 upstream sent too big header while reading response header from upstream, "
        "client: 10.0.3.7, request: \"POST /token HTTP/1.1\"",
    ]
    return items


def _source_code() -> list[str]:
    return [
        "class Settings(BaseSettings):\n    database_url: PostgresDsn\n    password: SecretStr\n    api_key: SecretStr | None = None\n"
        "    token_ttl: int = 3600",
        "def connect(host: str, user: str, password: str | None = None) -> Connection:\n    password = password or "
        "keyring.get_password('db', user)\n    return psycopg.connect(host=host, user=user, password=password)",
        "def rotate(secret: bytes) -> bytes:\n    new_secret = secrets.token_bytes(32)\n    store.put('signing', new_secret)\n"
        "    return new_secret",
        "token = jwt.encode(payload, settings.SECRET_KEY, algorithm='HS256')\nreturn {'access_token': token, 'token_type': 'bearer'}",
        "hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())\nif not bcrypt.checkpw(attempt.encode(), hashed):\n"
        "    raise AuthError('invalid password')",
        "parser.add_argument('--password', help='database password (default: prompt)')\nparser.add_argument('--token-file', "
        "type=Path)",
        "self.password = password\nself.token = None\nself.api_key = api_key",
        "password = passwd\ntoken = access_token\nsecret = client_secret",
        "client = Client(api_key=api_key, timeout=30)\nresp = client.post('/v1/auth', json={'password': password})",
        "assert verify_password('wrong', user.password_hash) is False",
        "@pytest.fixture\ndef token(client):\n    return client.post('/login', json={'user': 'a', 'password': PASSWORD}).json()['token']",
        "os.environ.setdefault('DJANGO_SECRET_KEY', get_random_secret_key())",
        "password: str = Field(min_length=12, description='at least 12 characters')",
        "export async function login(username: string, password: string): Promise<Session> {\n  const res = await fetch('/api/login', "
        "{ method: 'POST', body: JSON.stringify({ username, password }) });\n  return res.json();\n}",
        "interface Credentials {\n  username: string;\n  password: string;\n  token?: string;\n  apiKey: ApiKey;\n}",
        "const token = localStorage.getItem('token');\nif (!token) { router.push('/login'); }",
        "const { data: { session } } = await supabase.auth.getSession();\nconst accessToken = session?.access_token;",
        "app.use(session({ secret: process.env.SESSION_SECRET, resave: false, saveUninitialized: false }));",
        "headers: { Authorization: `Bearer ${token}`, 'X-Api-Key': config.apiKey },",
        "type Config struct {\n\tPassword string `json:\"password\" env:\"DB_PASSWORD\"`\n\tToken    string `json:\"token\"`\n}",
        "token := r.Header.Get(\"Authorization\")\nif token == \"\" {\n\thttp.Error(w, \"missing token\", http.StatusUnauthorized)\n\treturn\n}",
        "cfg := &oauth2.Config{ClientID: os.Getenv(\"CLIENT_ID\"), ClientSecret: os.Getenv(\"CLIENT_SECRET\")}",
        "pub struct Credentials {\n    pub username: String,\n    pub password: Secret<String>,\n    pub token: Option<String>,\n}",
        "let password = rpassword::prompt_password(\"Password: \")?;\nlet key = derive_key(&password, &salt);",
        "fn verify(token: &str, key: &DecodingKey) -> Result<Claims, Error> {\n    decode::<Claims>(token, key, &Validation::default())\n}",
        "String password = System.getenv(\"DB_PASSWORD\");\nDataSource ds = DataSourceBuilder.create().password(password).build();",
        "@Value(\"${spring.datasource.password}\")\nprivate String password;",
        "public record TokenResponse(String accessToken, String refreshToken, long expiresIn) {}",
        "var secret = builder.Configuration[\"Jwt:Secret\"];\nvar key = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(secret));",
        "public string Password { get; set; } = string.Empty;\npublic string? ApiKey { get; init; }",
        "user = User.find_by(email: params[:email])\nif user&.authenticate(params[:password])\n  session[:user_id] = user.id",
        "config.secret_key_base = ENV.fetch(\"SECRET_KEY_BASE\")",
        "$password = $_POST['password'] ?? '';\nif (!password_verify($password, $user['hash'])) { http_response_code(401); }",
        "'password' => env('DB_PASSWORD', ''),\n'token' => env('API_TOKEN'),",
        "val password: String = System.getenv(\"PASSWORD\") ?: error(\"PASSWORD not set\")",
        "data class Login(val username: String, val password: CharArray)",
        "let token: String? = try keychain.get(\"token\")\nguard let password = passwordField.text else { return }",
        "read -rsp 'Password: ' PASSWORD\necho\nexport PGPASSWORD=\"$PASSWORD\"\npsql -h db -U app",
        "TOKEN=$(gh auth token)\ncurl -H \"Authorization: Bearer $TOKEN\" https://api.github.com/user",
        "if [ -z \"${API_KEY:-}\" ]; then echo 'API_KEY is not set' >&2; exit 1; fi",
        "SELECT id FROM users WHERE email = $1 AND password_hash = crypt($2, password_hash);",
        "ALTER TABLE api_tokens ADD COLUMN token_hash bytea NOT NULL, ADD COLUMN last_used_at timestamptz;",
        "UPDATE users SET password_reset_token = NULL, password_changed_at = now() WHERE id = $1;",
        "resource \"aws_db_instance\" \"main\" {\n  username = \"app\"\n  password = random_password.db.result\n}",
        "variable \"db_password\" {\n  type      = string\n  sensitive = true\n}",
        "- name: Log in to GHCR\n  uses: docker/login-action@v3\n  with:\n    registry: ghcr.io\n    username: ${{ github.actor }}\n"
        "    password: ${{ secrets.GITHUB_TOKEN }}",
        "env:\n  NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\n  PYPI_API_TOKEN: ${{ secrets.PYPI_API_TOKEN }}",
        "password: {{ .Values.postgresql.auth.password | quote }}",
        "ansible_become_password: \"{{ vault_become_password }}\"",
        "def get_secret(name: str) -> str:\n    \"\"\"Read a secret from the mounted volume.\"\"\"\n    return Path('/run/secrets', name).read_text().strip()",
        "tokenizer = AutoTokenizer.from_pretrained('bert-base-uncased')\ntokens = tokenizer(text, max_length=512, truncation=True)",
        "from huggingface_hub import hf_hub_download\npath = hf_hub_download(repo_id='acme/model', filename='config.json')",
        "npm_config_cache=/tmp/.npm npm_package_version=1.4.2 npm_lifecycle_event=test",
        "key = cache_key(user_id, 'profile')\nvalue = redis.get(key)",
        "primary_key: id\nsort_key: created_at\nforeign_key: user_id",
        "private_key_path: ~/.ssh/id_ed25519\npublic_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample",
        "const secretName = `projects/${projectId}/secrets/db-password/versions/latest`;",
        "if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil {\n\treturn ErrWrongPassword\n}",
        "func (s *Store) Token(ctx context.Context) (string, error) { return s.token, nil }",
        "password = PasswordInput(label=\"Password\", required=True)\nremember = Checkbox(label=\"Remember me\")",
        "token: Token = Depends(oauth2_scheme)",
        "def login(user, password=None, token=None, **kwargs):\n    ...",
        "credentials: 'include',\nmode: 'cors',",
        "withCredentials: true,\nauth: basic",
        "auth: oauth\ntoken: auto\npassword: prompt",
        "secretKeyRef:\n  name: api-secrets\n  key: stripe-key",
        "keyring set system password\nkeyring get system password",
        "maxTokens: 2048,\ntokenLimit: 8192,\ntemperature: 0.2",
        "max_tokens=1024, stop=None, logprobs=False",
        "if password == confirm:\n    save(password)",
        "password = input('Password: ')",
        "token = secrets.token_urlsafe(32)  # sent to the user by email, stored hashed",
    ]


def _configs() -> list[str]:
    return [
        "# .env.example\nDATABASE_URL=postgresql://${DB_USER}:${DB_PASSWORD}@localhost:5432/app\nREDIS_URL=redis://localhost:6379/0\n"
        "SECRET_KEY=\nSTRIPE_SECRET_KEY=sk_test_...\nOPENAI_API_KEY=sk-...",
        # Documentation fillers, built here so that no token-shaped literal sits in the repo.
        f"GITHUB_TOKEN=ghp_{'x' * 36}\nGITLAB_TOKEN=glpat-{'x' * 20}\nHF_TOKEN=hf_{'x' * 34}",
        f"NPM_TOKEN=npm_{'X' * 36}\nDIGITALOCEAN_TOKEN=dop_v1_{'0' * 64}",
        f"AWS_ACCESS_KEY_ID={AWS_DOCS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={AWS_DOCS_SECRET}\nAWS_DEFAULT_REGION=us-west-2",
        f"[default]\naws_access_key_id = {AWS_DOCS_KEY_ID}\naws_secret_access_key = {AWS_DOCS_SECRET}",
        f"SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T{'0' * 8}/B{'0' * 8}/{'X' * 24}",
        "services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?required}\n"
        "      POSTGRES_USER: ${POSTGRES_USER:-app}",
        "services:\n  api:\n    environment:\n      - DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app\n      - JWT_SECRET_FILE=/run/secrets/jwt\n"
        "    secrets:\n      - jwt",
        "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db-credentials\n        key: password",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-credentials\ntype: Opaque\nstringData:\n  password: <set by sealed-secrets>",
        "spring.datasource.url=jdbc:postgresql://db:5432/app\nspring.datasource.username=app\nspring.datasource.password=${DB_PASSWORD}",
        "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n@acme:registry=https://npm.pkg.github.com",
        "[pypi]\nusername = __token__\npassword = <your PyPI token>",
        "[pypi]\nusername = __token__\npassword = ${PYPI_TOKEN}",
        "machine api.example.com login alice password ${NETRC_PASSWORD}",
        "machine github.com\n  login octocat\n  password <personal-access-token>",
        "users:\n- name: dev\n  user:\n    token: REDACTED\n    client-key-data: DATA+OMITTED",
        "users:\n- name: gke\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: gke-gcloud-auth-plugin",
        "{\n  \"auths\": {\n    \"ghcr.io\": {}\n  },\n  \"credsStore\": \"desktop\"\n}",
        "{\"type\": \"service_account\", \"project_id\": \"acme\", \"private_key\": \"<redacted>\", \"client_email\": "
        "\"ci@acme.iam.gserviceaccount.com\"}",
        "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=<storage-account-key>;EndpointSuffix=core.windows.net",
        "AZURE_STORAGE_CONNECTION_STRING=\"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=${AZURE_STORAGE_KEY}\"",
        "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=send-only;SharedAccessKey=<key>",
        "VAULT_ADDR=https://vault.acme.internal:8200\nVAULT_TOKEN=$(cat ~/.vault-token)\nVAULT_NAMESPACE=admin",
        "password: ********\nsecret: '********'\ntoken: \"••••••••\"",
        "db:\n  user: app\n  password: null\n  password_file: /run/secrets/db_password",
        "auth:\n  type: basic\n  credentials: include\n  token: required",
        "smtp:\n  host: smtp.acme.io\n  password: ${SMTP_PASSWORD}\n  token: \"{{ smtp_token }}\"",
        "[client]\nuser=app\npassword=%(DB_PASSWORD)s",
        "ConnectionStrings__Default=Server=db;Database=app;User Id=app;Password=$(DB_PASSWORD);",
        "Server=myServerAddress;Database=myDataBase;User Id=myUsername;Password=myPassword;",
        "mongodb+srv://<username>:<password>@cluster0.example.mongodb.net/?retryWrites=true",
        "postgresql://user:***@localhost:5432/app",
        "redis://localhost:6379/0\namqp://localhost:5672//\nmysql://localhost:3306/shop",
        "https://docs.acme.dev/auth#token-refresh\nhttps://api.acme.dev/v1/keys/3f9c2a1b",
        "git+https://github.com/acme/lib.git@v1.2.3#egg=lib\ngit+ssh://git@github.com/acme/infra.git@main",
        "OPENAI_API_KEY=\nANTHROPIC_API_KEY=\nGROQ_API_KEY=",
        "API_KEY=your-api-key-here\nAPI_SECRET=replace-me\nTOKEN=xxxxxxxx",
        "token: ~\napi_key: ''\nsecret: \"\"",
        "PWD=/srv/app\nOLDPWD=/srv\nSHLVL=1\nTERM=xterm-256color",
        "KEYCLOAK_ADMIN=admin\nKEYCLOAK_ADMIN_PASSWORD_FILE=/run/secrets/kc_admin",
        "SECRET=<change-me>\nSESSION_COOKIE_SECURE=true",
        "[auth]\nprovider = github\ntoken_url = https://github.com/login/oauth/access_token\nauthorize_url = https://github.com/login/oauth/authorize",
        "client_id: web-app\nclient_secret: ${OIDC_CLIENT_SECRET}\nscopes: [openid, email]",
        "X-Api-Key: <your key>\nAuthorization: Bearer <token>",
        "Set-Cookie: theme=dark; Path=/; SameSite=Lax\nCookie: theme=dark; lang=en",
        "jwt:\n  secret: ${JWT_SECRET}\n  expires_in: 3600\n  algorithm: HS256",
        "password_policy:\n  min_length: 12\n  require_symbols: true\n  max_age_days: 90",
        "refresh_token_rotation: true\naccess_token_lifetime: 15m\nid_token_signing_alg: RS256",
        "keystore:\n  path: /etc/app/keystore.p12\n  password: ${KEYSTORE_PASSWORD}\n  type: PKCS12",
        "[credential]\n\thelper = osxkeychain\n[user]\n\tname = Ada\n\temail = ada@example.com",
        "credential.helper=store\ncore.editor=vim\npull.rebase=true",
        "[[runners]]\n  name = \"ci\"\n  token = \"__REDACTED__\"\n  executor = \"docker\"",
        "dop_v1_ tokens are personal access tokens; doo_v1_ are OAuth tokens and dor_v1_ refresh tokens.",
        "Vault tokens look like hvs.<random>, batch tokens hvb.<random>, recovery tokens hvr.<random>.",
        "Set SENDGRID_API_KEY to a key that starts with SG. and has mail.send scope.",
        "GOCSPX- is the prefix of Google OAuth client secrets created after 2021.",
        "https://acme.blob.core.windows.net/exports/report.csv?sv=2022-11-02&sig=<signature>",
        "?sig=abc&exp=1731000000",
        "[project.urls]\nHomepage = \"https://example.com\"\n[tool.poetry.dependencies]\npython = \"^3.11\"\nkeyring = \"^24.0\"",
        "[tool.ruff]\nline-length = 120\n[tool.mypy]\nstrict = true",
        "dependencies:\n  passlib: ^1.7.4\n  python-jose: ^3.3.0",
    ]


def _prose() -> list[str]:
    return [
        "The user forgot their password and asked for a reset link.",
        "Password: required for all admin accounts.",
        "Your password was changed on November 20. If this wasn't you, contact support.",
        "The password is stored in 1Password under the shared vault.",
        "Tokens expire after one hour; use the refresh token to get a new one.",
        "I rotated the API key and updated the secret in the CI settings.",
        "Never paste your password into a chat. Use the password manager instead.",
        "The token: expired at 10:00, so the job failed.",
        "Reset your password: https://acme.dev/account/reset",
        "Secret: keep it in the vault, not in the repo.",
        "The passphrase should be at least four random words.",
        "Password is the same as staging, ask Carol for it.",
        "Use a long passphrase made of random words; length beats complexity.",
        "The secret key is generated at startup and never leaves the HSM.",
        "I couldn't authenticate: the password was rejected three times.",
        "Access tokens are JWTs signed with RS256; refresh tokens are opaque.",
        "Please set the DB_PASSWORD environment variable before running migrations.",
        "Two-factor recovery codes are shown once; store them somewhere safe.",
        "The API key goes in the X-Api-Key header, not in the query string.",
        "Bearer of bad news: the deploy failed again.",
        "The bearer token is read from the TOKEN environment variable at startup.",
        "My password manager generated a new one for the router.",
        "The machine learning model flags passwords in commit diffs.",
        "GitHub tokens start with ghp_, gho_, ghu_, ghs_ or ghr_; fine-grained ones with github_pat_.",
        "OpenAI keys start with sk- and Anthropic keys with sk-ant-.",
        "The npm token goes in ~/.npmrc as _authToken; PyPI tokens go in ~/.pypirc.",
        "Hugging Face tokens begin with hf_ and can be read-only or write.",
        "The password field is masked; click the eye icon to reveal it.",
        "If the password is incorrect five times, the account is locked for 15 minutes.",
        "Your password is incorrect. Please try again.",
        "The password is: hidden for security reasons.",
        "the passcode was sent by SMS to the number on file",
        "Token budget: 8k tokens per request, 200k per day.",
        "The tokenizer splits 'unbelievable' into three tokens.",
        "She keeps her passwords in a notebook, which is not ideal.",
        "Credentials are loaded from the default provider chain (env, profile, IMDS).",
        "After the breach we forced a password reset for every user.",
        "The secret santa list is in the shared drive.",
        "Keys, wallet, phone: check.",
        "Passwords must contain at least 12 characters, one digit and one symbol.",
        "We hash passwords with Argon2id (m=64MiB, t=3, p=4).",
        "The session cookie is HttpOnly and Secure.",
        "auth is handled by the gateway; services trust the X-User header.",
        "Store the private key in the KMS, never on disk.",
        "deploy keys are read-only by default",
        "The desk-organizer-2024-edition ships in two colors.",
        "Ask-me-anything sessions run every Friday; task-runner jobs run nightly.",
        "I ran `pip install scikit-learn` and the build passed.",
        "The SG.1 section of the spec covers signing.",
        "Chapter 3: hvs. and hvb. token formats explained",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Vivamus dapibus, nunc at pulvinar dapibus, pul-lum lectus.",
        "we should rotate the token tomorrow, the current one expires on Monday",
        "Can you check why the password reset email never arrives?",
        "Set the password to something long, and store it in the vault.",
        "The API token needs the read_repository scope.",
        "Forgot password? Click here.",
        "Confirm password: must match the password above.",
        "Enter your passphrase to unlock the key.",
        "The token endpoint returns 400 when the grant type is wrong.",
        "A password is like a toothbrush: don't share it, change it often.",
    ]


def _misc(rng: random.Random) -> list[str]:
    items = [
        "arn:aws:iam::123456789012:role/deploy\narn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf",
        "s3://acme-backups/2026/11/21/db.dump.gz\ngs://acme-artifacts/releases/v1.4.2/app.tar.gz",
        "alice@example.com, bob+test@example.org, carol@sub.example.co.uk",
        "fe80::1ff:fe23:4567:890a\n2001:db8:85a3::8a2e:370:7334\n192.168.1.10/24",
        "MAC 3c:22:fb:9a:0e:11, serial C02XK1ZZJGH5",
        "version 1.4.2-rc.1+build.20261121.3f9c2a1",
        "| name | token_count | secret_scanning |\n|------|-------------|-----------------|\n| api  | 1532        | enabled         |",
        "name,email,password_last_changed\nalice,alice@example.com,2026-10-01\nbob,bob@example.com,2026-09-12",
        "<input type=\"password\" name=\"password\" autocomplete=\"current-password\" required>",
        "<meta name=\"csrf-token\" content=\"{{ csrf_token() }}\">",
        ".password-field { border: 1px solid #3f9c2a; } .token-badge { color: #1b7d4e; }",
        "### Rotating secrets\n1. Create a new key.\n2. Update the secret in the vault.\n3. Revoke the old key.",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 3\n  template:\n    spec:\n"
        "      containers:\n      - name: api\n        image: ghcr.io/acme/api@sha256:" + hashlib.sha256(b"api").hexdigest(),
        "HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"\nContent-Length: 0",
        "HTTP/2 200\ncontent-type: application/json\nx-request-id: 7f3e9c1a-2b4d-4e6f-8a0b-1c2d3e4f5a6b\nstrict-transport-security: max-age=63072000",
        json.dumps({"token_type": "Bearer", "expires_in": 3600, "scope": "read write", "refresh_token_expires_in": 86400}),
        json.dumps({"NextToken": None, "SecretList": [{"Name": "prod/db", "ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db"}]}),
        json.dumps({"Parameters": [{"Name": "/prod/db/password", "Type": "SecureString", "Version": 4}]}),
        json.dumps({"usage": {"input_tokens": 1532, "output_tokens": 211, "cache_read_input_tokens": 0}}),
        json.dumps({"error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        json.dumps({"keys": [{"kty": "RSA", "kid": "2026-11", "use": "sig", "alg": "RS256", "e": "AQAB",
                              "n": base64.urlsafe_b64encode(bytes(rng.getrandbits(8) for _ in range(256))).decode().rstrip("=")}]}),
        "openssl rand -base64 32 > /run/secrets/jwt && chmod 600 /run/secrets/jwt",
        "ssh-keygen -t ed25519 -C deploy@ci -f ~/.ssh/deploy_ed25519 -N ''",
        "gpg --list-secret-keys --keyid-format=long\nsec   ed25519/3AA5C34371567BD2 2026-01-01 [SC]",
        "$ ls ~/.aws\nconfig  credentials  sso",
        "$ cat ~/.aws/config\n[profile prod]\nsso_start_url = https://acme.awsapps.com/start\nsso_region = eu-west-1\nregion = eu-west-1",
        "Press Ctrl+C to quit. Open http://127.0.0.1:8080/?token=&theme=dark in a browser.",
        "Jupyter Server is running at http://localhost:8888/lab",
        "sk-learn is not a package; you want scikit-learn.",
        "The file ssh_host_ed25519_key.pub was updated.",
        "Δ password policy: ≥12 chars; ✓ MFA enforced; ✗ SMS fallback",
        "パスワードを忘れた場合はリセットしてください。",
        "Das Passwort ist abgelaufen, bitte ändern.",
    ]
    for i in range(10):
        items.append(f"GET https://api.example.com/v2/items?page={i}&per_page=50&sort=created_at&order=desc 200 "
                     f"{rng.randint(5, 400)}ms")
        items.append(f"{rng.randint(1, 99)}.{rng.randint(0, 9)}% of {rng.randint(100, 9999)} requests failed with 401 "
                     f"(token expired) in region eu-west-{rng.randint(1, 3)}")
    return items


def _generated_benign() -> list[str]:
    rng = random.Random(20261122)
    return (_ids_and_hashes(rng) + _blobs(rng) + _minified_js(rng) + _lockfiles(rng) + _logs(rng) + _source_code()
            + _configs() + _prose() + _misc(rng))


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
        "DB_PASSWORD=${DB_PASSWORD}\nAPI_KEY=<your-api-key>\nSECRET=<change-me>",  # `changeme` is a real password
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
    return items + _generated_benign()
