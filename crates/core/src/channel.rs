//! Notification channels: where people hear about requests (Slack, Microsoft Teams, e-mail, a
//! signed webhook), configured once under `[[notifications.channels]]` and referenced by name
//! from gates and rules. Plain data, built by the configuration loader with secrets already
//! read from their files; the notify crate sends with them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::secret::Secret;

/// The default Slack Web API base URL.
pub const SLACK_API_URL: &str = "https://slack.com/api";

/// One configured channel.
#[derive(Clone, Debug)]
pub struct ChannelSpec {
    /// Its unique name, `[a-z0-9][a-z0-9-]*`, as gates and rules reference it.
    pub name: String,
    /// What it is and how to reach it.
    pub kind: ChannelKind,
    /// The most messages per second sent to it by one process (Slack allows about one a
    /// second per channel, a Teams workflow about four).
    pub max_per_second: f64,
}

/// The kinds of channel.
#[derive(Clone, Debug)]
pub enum ChannelKind {
    /// Slack, by incoming webhook or with a bot token.
    Slack(SlackSpec),
    /// A Microsoft Teams Workflows webhook ("When a Teams webhook request is received").
    Teams(TeamsSpec),
    /// E-mail over SMTP.
    Email(EmailSpec),
    /// A generic JSON notification, signed like the gates' Standard Webhooks.
    Webhook(WebhookChannelSpec),
    /// Kept in the process and shown at `/dev/notifications` (the dev sandbox): what every
    /// other kind would send, rendered, without any external account.
    Preview,
}

impl ChannelKind {
    /// The kind's name as written in configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Slack(_) => "slack",
            ChannelKind::Teams(_) => "teams",
            ChannelKind::Email(_) => "email",
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::Preview => "preview",
        }
    }

    /// The default for [`ChannelSpec::max_per_second`].
    pub fn default_rate(name: &str) -> f64 {
        match name {
            "slack" => 1.0,
            "teams" => 4.0,
            "email" => 10.0,
            _ => 50.0,
        }
    }
}

/// How countersign talks to Slack.
#[derive(Clone, Debug)]
pub enum SlackSpec {
    /// An incoming webhook URL (a secret: it is the credential). Posts only; a change is a
    /// follow-up message.
    Webhook {
        /// The `https://hooks.slack.com/services/…` URL.
        url: Secret,
    },
    /// A bot token (`xoxb-…`) posting to one channel with `chat.postMessage`, then editing
    /// the same message with `chat.update` and replying in its thread.
    Bot {
        /// The bot token.
        token: Secret,
        /// The channel ID (`C0123ABCD`).
        channel: String,
        /// The Web API base URL, [`SLACK_API_URL`] unless a test points it elsewhere.
        api_url: String,
    },
}

/// A Teams Workflows webhook.
#[derive(Clone, Debug)]
pub struct TeamsSpec {
    /// The workflow's URL (its `sig=` parameter is the credential).
    pub url: Secret,
}

/// How a mail server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: STARTTLS required (never a plaintext fallback).
    StartTls,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp://…?tls=none`: no TLS, accepted only to a loopback address.
    Plain,
}

/// E-mail over SMTP.
#[derive(Clone, Debug)]
pub struct EmailSpec {
    /// The server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port (587 for STARTTLS, 465 for implicit TLS by default).
    pub port: u16,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// The AUTH user, if any.
    pub username: Option<String>,
    /// The AUTH password, read from its file.
    pub password: Option<Secret>,
    /// Extra trusted root certificates (PEM), e.g. a private CA's.
    pub ca_pem: Option<String>,
    /// The `From` header, `name <address>` or an address.
    pub from: String,
    /// Fixed recipients.
    pub to: Vec<String>,
    /// Whether the eligible people's verified addresses are added to `to`.
    pub to_eligible: bool,
}

/// A generic, signed JSON notification.
#[derive(Clone, Debug)]
pub struct WebhookChannelSpec {
    /// Where to POST.
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_…`).
    pub secret: Secret,
}

/// Every configured channel, by name.
#[derive(Clone, Debug, Default)]
pub struct Channels {
    channels: BTreeMap<String, Arc<ChannelSpec>>,
}

impl Channels {
    /// Builds the set; names are assumed unique (configuration loading checks).
    pub fn new(channels: impl IntoIterator<Item = ChannelSpec>) -> Self {
        Self {
            channels: channels
                .into_iter()
                .map(|c| (c.name.clone(), Arc::new(c)))
                .collect(),
        }
    }

    /// The channel of this name.
    pub fn get(&self, name: &str) -> Option<&Arc<ChannelSpec>> {
        self.channels.get(name)
    }

    /// All channels, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ChannelSpec>> {
        self.channels.values()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}
