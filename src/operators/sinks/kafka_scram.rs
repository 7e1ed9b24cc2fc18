//! The client side of SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka
//! uses it: no channel binding (`n,,`), the user name escaped, the server's signature checked.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

/// One SCRAM exchange.
pub struct Scram {
    sha512: bool,
    client_first_bare: String,
    nonce: String,
    /// HMAC(SaltedPassword, "Server Key") and the AuthMessage, once the final message is made.
    expect: Option<(Vec<u8>, String)>,
}

impl Scram {
    pub fn new(sha512: bool, username: &str) -> Scram {
        let user = username.replace('=', "=3D").replace(',', "=2C");
        // 256 random bits, printable.
        let nonce = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Scram {
            sha512,
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            expect: None,
        }
    }

    /// `client-first-message`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// `client-final-message` in answer to the server's first message.
    pub fn client_final(&mut self, server_first: &[u8], password: &str) -> Result<Vec<u8>, String> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| "the server's first message is not text".to_string())?;
        let attr = |name: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
        };
        if let Some(e) = attr("e") {
            return Err(format!("the server refused: {e}"));
        }
        let nonce = attr("r").ok_or("the server's first message has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("the server's nonce does not extend the client's".into());
        }
        let salt = attr("s")
            .and_then(|s| B64.decode(s).ok())
            .ok_or("the server's first message has no valid salt")?;
        let iterations: u32 = attr("i")
            .and_then(|i| i.parse().ok())
            .filter(|i| *i > 0)
            .ok_or("the server's first message has no valid iteration count")?;
        let salted = self.hi(password.as_bytes(), &salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        self.expect = Some((self.hmac(&salted, b"Server Key"), auth_message));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: it proves the server knows the password too.
    pub fn verify_server(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).unwrap_or_default();
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server refused: {e}"));
        }
        let (server_key, auth_message) = self.expect.as_ref().ok_or("no final message sent")?;
        let expected = B64.encode(self.hmac(server_key, auth_message.as_bytes()));
        match text.split(',').find_map(|a| a.strip_prefix("v=")) {
            Some(v) if v == expected => Ok(()),
            _ => Err("the server's signature is wrong".into()),
        }
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        if self.sha512 {
            let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        } else {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        if self.sha512 {
            Sha512::digest(data).to_vec()
        } else {
            Sha256::digest(data).to_vec()
        }
    }

    /// `Hi()`: PBKDF2 with HMAC, one block.
    fn hi(&self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example.
    #[test]
    fn the_rfc_example_exchange() {
        let mut s = Scram::new(false, "user");
        s.nonce = "rOprNGfwEbeRWgbNEkqO".into();
        s.client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = s.client_final(server_first, "pencil").unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(s.verify_server(b"v=AAAA").is_err());
    }

    #[test]
    fn user_names_are_escaped_and_foreign_nonces_refused() {
        let mut s = Scram::new(true, "a=b,c");
        let first = String::from_utf8(s.client_first()).unwrap();
        assert!(first.starts_with("n,,n=a=3Db=2Cc,r="), "{first}");
        assert!(s.client_final(b"r=other,s=AA==,i=1", "p").is_err());
    }
}
