"""Automatic judgement of a running release from its live figures (pure: figures in, verdict out).

Breaches roll back at once (after ``breach_min_requests`` compared images, so one odd image is not
a verdict); promotion waits for ``min_requests`` compared images *and* ``min_seconds`` *and*
agreement at ``promote_agreement``. The figures are counted since the release started, over every
worker of the server (prometheus multiprocess files); with several replicas each replica judges
its own traffic and the first verdict written to the shared state wins (docs/releases.md).
"""

from __future__ import annotations

from backend.releases.policy import Policy


def summarise(totals: dict, baseline: dict, seconds: float) -> dict:
    """Counts since the release started and the ratios the policy is written in."""
    d = {k: totals[k] - baseline.get(k, 0.0) for k in totals}
    compared = d["agree"] + d["disagree"]
    attempts = d["candidate_requests"] + d["candidate_errors"]
    out = {"seconds": round(seconds, 1), "compared_images": int(compared),
           "candidate_requests": int(d["candidate_requests"]), "candidate_errors": int(d["candidate_errors"]),
           "agreement": round(d["agree"] / compared, 5) if compared else None,
           "error_rate": round(d["candidate_errors"] / attempts, 5) if attempts else None}
    if d["candidate_runs"] and d["stable_runs"]:
        cand = d["candidate_seconds"] / d["candidate_runs"]
        stable = d["stable_seconds"] / d["stable_runs"]
        out.update(candidate_latency_ms=round(cand * 1e3, 4), stable_latency_ms=round(stable * 1e3, 4),
                   latency_ratio=round(cand / stable, 3) if stable > 0 else None)
    if d["candidate_images"]:
        out["candidate_ood_share"] = round(d["candidate_ood"] / d["candidate_images"], 5)
    if d["stable_images"]:
        out["stable_ood_share"] = round(d["stable_ood"] / d["stable_images"], 5)
    return out


def decide(f: dict, policy: Policy) -> tuple[str | None, str]:
    """``("rollback" | "promote" | None, reason)`` for the summarised figures ``f``."""
    compared = f["compared_images"]
    if compared >= policy.breach_min_requests or f["candidate_errors"] >= policy.breach_min_requests:
        if f["error_rate"] is not None and f["error_rate"] > policy.max_error_rate:
            return "rollback", f"breach: error rate {f['error_rate']:.4f} > max_error_rate {policy.max_error_rate:g}"
    if compared >= policy.breach_min_requests:
        if f["agreement"] < policy.rollback_agreement:
            return "rollback", (f"breach: agreement with stable {f['agreement']:.4f} < rollback_agreement "
                                f"{policy.rollback_agreement:g} over {compared} images")
        ratio = f.get("latency_ratio")
        if ratio is not None and ratio > policy.max_latency_ratio:
            return "rollback", f"breach: latency {ratio:.2f} x stable > max_latency_ratio {policy.max_latency_ratio:g}"
        cand_ood, stable_ood = f.get("candidate_ood_share"), f.get("stable_ood_share")
        if cand_ood is not None and stable_ood is not None and cand_ood - stable_ood > policy.max_ood_share_increase:
            return "rollback", (f"breach: out-of-distribution share {cand_ood:.4f} vs stable {stable_ood:.4f} "
                                f"(+{policy.max_ood_share_increase:g} allowed)")
    if (compared >= policy.min_requests and f["seconds"] >= policy.min_seconds
            and f["agreement"] >= policy.promote_agreement):
        return "promote", (f"agreement with stable {f['agreement']:.4f} >= {policy.promote_agreement:g} over "
                           f"{compared} images in {f['seconds']:.0f} s, no breach")
    return None, ""
