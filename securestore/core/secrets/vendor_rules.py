"""Vendor credential formats (data): (kind, pattern) rules anchored on vendor prefixes.

The facts (prefixes, lengths, alphabets) follow the public gitleaks and trufflehog rule sets;
vendor_scan.py compiles the table and runs it.
"""

from __future__ import annotations

_END = r"(?![A-Za-z0-9_\-])"

# Vendor formats, (kind, pattern). Every pattern starts with a literal character (a left
# boundary, where one is needed, is a look-behind placed AFTER that literal): all of them are
# compiled into ONE alternation, and the regex engine then tries only the positions whose
# character can start a rule and rejects most rules on their first character (one pass over
# the text instead of one per format; see tools/detector_report.py --timing). A named group
# `secret` narrows the finding to part of the match (`AccountKey=<secret>`).
VENDOR_RULES: tuple[tuple[str, str], ...] = (
    (
        "pem-private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    # Distinctive vendor prefixes need no boundary: a key glued to other text is still a key, and
    # the body is open-ended (`{36,}`) so that glued characters are redacted with it, never left
    # out of a match that then fails.
    ("aws-access-key-id", r"A(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}"),
    ("github-token", r"gh[pousr]_[A-Za-z0-9]{36,255}"),
    ("github-pat", r"github_pat_[A-Za-z0-9_]{22,255}"),
    ("anthropic-key", r"sk-ant-[a-z]{2,10}\d{0,3}-[A-Za-z0-9_\-]{32,}"),
    ("openrouter-key", r"sk-or-v1-[a-f0-9]{64}"),
    # The bare `sk-` form keeps its boundary: "desk-organizer-2024-edition" is not a key. It comes
    # before the other OpenAI forms: at one position the first rule that matches sets the extent.
    ("openai-key", r"sk-(?<![A-Za-z0-9_\-]sk-)(?!ant-)[A-Za-z0-9_\-]{20,}" + _END),
    ("openai-key", r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}"),
    ("openai-key", r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"),
    ("slack-token", r"xox[abposr]-[0-9]{6,}-[0-9A-Za-z\-]{8,}"),
    ("slack-app-token", r"xapp-\d-[A-Z0-9]+-\d+-[a-f0-9]+"),
    ("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/\-]{20,}"),
    ("discord-webhook", r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_\-]{60,80}"),
    ("google-api-key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("google-oauth-client-secret", r"GOCSPX-[A-Za-z0-9_\-]{28,}"),
    ("stripe-key", r"sk_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("stripe-key", r"rk_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("stripe-webhook-secret", r"whsec_[A-Za-z0-9]{24,}"),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    ("npm-token", r"npm_[A-Za-z0-9]{36,}"),
    ("pypi-token", r"pypi-AgE[A-Za-z0-9_\-]{50,}"),  # a macaroon: "AgE" starts its base64
    (
        "gitlab-token",
        r"gl(?:pat|oas|dt|rt|rtr|cbt|ptt|ft|imt|agent|soat|ffct)-[A-Za-z0-9_\-]{20,}(?:\.[0-9a-z]{2,12}){0,2}",
    ),
    ("gitlab-token", r"GR1348941[A-Za-z0-9_\-]{20,}"),  # runner registration token
    ("huggingface-token", r"hf_[A-Za-z0-9]{34,}"),
    ("huggingface-token", r"api_org_[A-Za-z0-9]{34,}"),
    ("sendgrid-key", r"SG\.[A-Za-z0-9_\-]{20,24}\.[A-Za-z0-9_\-]{39,}"),
    ("vault-token", r"hv[sbr]\.[A-Za-z0-9_\-]{24,}(?:\.[A-Za-z0-9_\-]+)*"),
    # `vault operator init` and dev-mode banners: "Unseal Key 1: <base64>".
    ("vault-unseal-key", r"Unseal Key(?: \d{1,2})?: (?P<secret>[A-Za-z0-9+/]{40,}={0,2})"),
    ("vault-unseal-key", r"Recovery Key(?: \d{1,2})?: (?P<secret>[A-Za-z0-9+/]{40,}={0,2})"),
    ("digitalocean-token", r"do[opr]_v1_[a-f0-9]{64}"),
    ("azure-storage-key", r"AccountKey=(?P<secret>[A-Za-z0-9+/]{20,}={0,2})"),
    ("azure-storage-key", r"SharedAccessKey=(?P<secret>[A-Za-z0-9+/]{20,}={0,2})"),
    # The signature of a SAS URL or `SharedAccessSignature=...&sig=...` grants access by itself.
    ("sas-signature", r"sig=(?<=[?&;]sig=)(?P<secret>[A-Za-z0-9%+/_\-]{16,}={0,2})"),
    ("shopify-token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("age-secret-key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    ("databricks-token", r"dapi[a-f0-9]{32}(?:-\d)?"),
    ("doppler-token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}"),
    ("linear-api-key", r"lin_api_[A-Za-z0-9]{40}"),
    ("postman-api-key", r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}"),
    ("grafana-token", r"glc_[A-Za-z0-9+/]{32,}={0,3}"),
    ("grafana-token", r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"),
    ("sentry-token", r"sntryu_[a-f0-9]{64}"),
    ("sentry-token", r"sntrys_eyJ[A-Za-z0-9+/=_]{40,}"),
    ("pulumi-token", r"pul-[a-f0-9]{40}"),
    ("rubygems-token", r"rubygems_[a-f0-9]{48}"),
    ("planetscale-token", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_=.\-]{32,64}"),
    ("notion-token", r"ntn_[0-9]{11}[A-Za-z0-9]{35}"),
    ("groq-key", r"gsk_[A-Za-z0-9]{52}"),
    ("xai-key", r"xai-[A-Za-z0-9_]{80}"),
    # `r8_` is short: the body must hold a capital or a digit (`ar8_some_long_snake_case_name` does not).
    ("replicate-token", r"r8_(?=[a-z_\-]*[A-Z0-9])[A-Za-z0-9_\-]{37,}"),
    ("langsmith-key", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}"),
    ("perplexity-key", r"pplx-[A-Za-z0-9]{48}"),
    ("pinecone-key", r"pcsk_[A-Za-z0-9]{5,6}_[A-Za-z0-9]{63}"),
    ("onepassword-token", r"ops_eyJ[A-Za-z0-9+/]{250,}={0,3}"),
    ("heroku-key", r"HRKU-AA[0-9a-zA-Z_\-]{58}"),
)
