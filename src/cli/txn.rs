//! `ballot txn`: a transaction read from standard input, in etcdctl's format: compares, a blank
//! line, the operations run if they all hold, a blank line, the operations run otherwise.
//!
//! ```text
//! value("/counter") = "5"
//! mod("/config") < "12"
//!
//! put /counter 6
//!
//! get /counter
//! ```

use anyhow::{bail, Context};
use ballot_proto::etcdserverpb as pb;

/// Parses the whole input into a txn request.
pub fn parse(input: &str) -> anyhow::Result<pb::TxnRequest> {
    let mut sections: Vec<Vec<&str>> = vec![Vec::new()];
    for line in input.lines().map(str::trim) {
        if line.is_empty() {
            if sections.len() < 3 {
                sections.push(Vec::new());
            }
        } else {
            sections.last_mut().expect("never empty").push(line);
        }
    }
    sections.resize(3, Vec::new());
    let compare = sections[0].iter().map(|line| compare(line)).collect::<anyhow::Result<_>>()?;
    let ops = |lines: &[&str]| lines.iter().map(|line| op(line)).collect::<anyhow::Result<Vec<_>>>();
    Ok(pb::TxnRequest { compare, success: ops(&sections[1])?, failure: ops(&sections[2])? })
}

/// Splits a line into words, honouring double quotes.
fn words(line: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => word.extend(chars.next()),
                    Some(c) => word.push(c),
                    None => bail!("unterminated quote in: {line}"),
                }
            }
            out.push(word);
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    Ok(out)
}

/// `target("key") op "value"`.
fn compare(line: &str) -> anyhow::Result<pb::Compare> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let (target, rest) = line.split_once('(').with_context(|| format!("not a compare: {line}"))?;
    let (key, rest) = rest.split_once(')').with_context(|| format!("not a compare: {line}"))?;
    let key = words(key)?.into_iter().next().with_context(|| format!("no key in: {line}"))?;
    let rest = words(rest)?;
    let [op, value] = rest.as_slice() else { bail!("expected `op value` after the key in: {line}") };
    let result = match op.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        other => bail!("unknown comparison {other} in: {line}"),
    };
    let number = || value.parse::<i64>().with_context(|| format!("'{value}' is not a number in: {line}"));
    let (target, union) = match target.trim() {
        "value" | "val" | "v" => (CompareTarget::Value, TargetUnion::Value(value.clone().into_bytes())),
        "version" | "ver" => (CompareTarget::Version, TargetUnion::Version(number()?)),
        "create" | "c" => (CompareTarget::Create, TargetUnion::CreateRevision(number()?)),
        "mod" | "m" => (CompareTarget::Mod, TargetUnion::ModRevision(number()?)),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(number()?)),
        other => bail!("unknown compare target {other} in: {line}"),
    };
    Ok(pb::Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        target_union: Some(union),
        range_end: Vec::new(),
    })
}

/// `put KEY VALUE`, `get KEY [--prefix]`, `del KEY [--prefix]`.
fn op(line: &str) -> anyhow::Result<pb::RequestOp> {
    use pb::request_op::Request;
    let words = words(line)?;
    let prefix = words.iter().any(|w| w == "--prefix");
    let args: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
    let range_end = |key: &str| super::client::range_end(key, prefix);
    let request = match args.as_slice() {
        [verb, key, value] if verb.as_str() == "put" => Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        }),
        [verb, key] if verb.as_str() == "get" => Request::RequestRange(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: range_end(key),
            ..Default::default()
        }),
        [verb, key] if verb.as_str() == "del" => Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: range_end(key),
            prev_kv: false,
        }),
        _ => bail!("not an operation (put KEY VALUE, get KEY, del KEY): {line}"),
    };
    Ok(pb::RequestOp { request: Some(request) })
}

/// Prints a txn's outcome as etcdctl does.
pub fn print(response: &pb::TxnResponse) {
    use pb::response_op::Response;
    println!("{}\n", if response.succeeded { "SUCCESS" } else { "FAILURE" });
    for op in &response.responses {
        match &op.response {
            Some(Response::ResponsePut(_)) => println!("OK"),
            Some(Response::ResponseDeleteRange(delete)) => println!("{}", delete.deleted),
            Some(Response::ResponseRange(range)) => {
                for kv in &range.kvs {
                    println!("{}\n{}", String::from_utf8_lossy(&kv.key), String::from_utf8_lossy(&kv.value));
                }
            }
            Some(Response::ResponseTxn(_)) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_format_parses() {
        let txn = parse(
            "value(\"/counter\") = \"5\"\nmod(\"a b\") > 3\n\nput /counter 6\nput \"x y\" \"1 2\"\n\nget /c --prefix\n",
        )
        .unwrap();
        assert_eq!(txn.compare.len(), 2);
        assert_eq!(txn.compare[1].key, b"a b");
        assert_eq!(txn.success.len(), 2);
        assert_eq!(txn.failure.len(), 1);
        let Some(pb::request_op::Request::RequestRange(range)) = &txn.failure[0].request else { panic!() };
        assert_eq!(range.range_end, b"/d");
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse("value(\"k\") ~ \"5\"\n").is_err());
        assert!(parse("mod(\"k\") > x\n").is_err());
        assert!(parse("\nfrobnicate k\n").is_err());
        assert!(parse("value(\"k) = 1\n").is_err());
    }
}
