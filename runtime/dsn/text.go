package dsn

import (
	"fmt"
	"strings"
	"time"
)

// language is the wording of a report in one language.
type language struct {
	from    string            // the display name of postmaster
	subject map[Action]string // by reportKind
	// intro is the sentence before the recipients with this action; one
	// is true for a single recipient.
	intro     func(a Action, one bool) string
	retry     string // before the Will-Retry-Until date of a delayed recipient
	answered  string // before the remote host's answer ("%s": the host)
	reason    string // before an answer without a host
	subjectOf string
	hdrs      string // the original's header is attached
	full      string // the whole original is attached
	tooBig    string // RET=FULL asked, but the message is over MaxFull
	greeting  string // "%s": the reporting host
	date      func(time.Time) string
}

var texts = map[string]language{
	"en": {
		from: "Mail Delivery System",
		subject: map[Action]string{
			Failed:    "Undelivered Mail Returned to Sender",
			Delayed:   "Delayed Mail (still being retried)",
			Delivered: "Successful Mail Delivery Report",
		},
		intro: func(a Action, one bool) string {
			switch a {
			case Failed:
				return "Your message could not be delivered to the following recipients; the mail system has given up:"
			case Delayed:
				return "Your message has not yet been delivered to the following recipients. The mail system is still trying: you do not need to send it again, and you will be told if it finally fails."
			case Delivered:
				return "Your message was delivered to the following recipients:"
			case Relayed:
				return "Your message was passed on, for the following recipients, to a mail system that sends no delivery reports:"
			default:
				return "Your message was delivered to the following lists or redirections, which passed it on:"
			}
		},
		retry:     "    Tried again until %s.",
		answered:  "    The server %s answered:",
		reason:    "    Reason:",
		subjectOf: "Subject of your message: %s",
		hdrs:      "The header of your message is attached.",
		full:      "Your message is attached.",
		tooBig:    "Your message is too large to be returned whole; its header is attached.",
		greeting:  "This is the mail system at %s.",
		date: func(t time.Time) string {
			return t.Format("Monday 2 January 2006 at 15:04 (MST)")
		},
	},
	"fr": {
		from: "Système de distribution du courrier",
		subject: map[Action]string{
			Failed:    "Message non remis",
			Delayed:   "Message retardé (nouvel essai en cours)",
			Delivered: "Accusé de remise",
		},
		intro: func(a Action, one bool) string {
			to := "aux destinataires suivants"
			if one {
				to = "au destinataire suivant"
			}
			switch a {
			case Failed:
				return "Votre message n'a pas pu être remis " + to + " ; le système de messagerie a renoncé à le distribuer :"
			case Delayed:
				return "Votre message n'a pas encore pu être remis " + to + ". Le système de messagerie continue d'essayer : inutile de le renvoyer. Vous serez prévenu s'il ne peut finalement pas être remis."
			case Delivered:
				return "Votre message a bien été remis " + to + " :"
			case Relayed:
				return "Votre message a été transmis, pour les destinataires suivants, à un système de messagerie qui n'envoie pas d'accusé de remise :"
			default:
				return "Votre message a été remis aux listes ou redirections suivantes, qui l'ont retransmis :"
			}
		},
		retry:     "    Nouvel essai jusqu'au %s.",
		answered:  "    Le serveur %s a répondu :",
		reason:    "    Motif :",
		subjectOf: "Objet de votre message : %s",
		hdrs:      "Les en-têtes de votre message sont joints.",
		full:      "Votre message est joint.",
		tooBig:    "Votre message est trop volumineux pour vous être renvoyé en entier ; ses en-têtes sont joints.",
		greeting:  "Ceci est le système de messagerie de %s.",
		date: func(t time.Time) string {
			days := [...]string{"dimanche", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi"}
			months := [...]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"}
			return fmt.Sprintf("%s %d %s %d à %s (%s)", days[t.Weekday()], t.Day(), months[t.Month()-1], t.Year(), t.Format("15:04"), t.Format("MST"))
		},
	},
}

// explain writes the text/plain part, LF lines (the quoted-printable
// writer makes them CRLF); note says what of the original is attached.
func (l language) explain(host, subject string, rcpts []Recipient, note string) string {
	var b strings.Builder
	fmt.Fprintf(&b, l.greeting+"\n\n", host)
	if subject != "" {
		fmt.Fprintf(&b, l.subjectOf+"\n\n", subject)
	}
	for _, a := range []Action{Failed, Delayed, Delivered, Relayed, Expanded} {
		var group []Recipient
		for _, rc := range rcpts {
			if rc.Action == a {
				group = append(group, rc)
			}
		}
		if len(group) == 0 {
			continue
		}
		b.WriteString(l.intro(a, len(group) == 1) + "\n\n")
		for _, rc := range group {
			b.WriteString("  " + rc.Addr + "\n")
			if lines := answerLines(rc.Diagnostic); len(lines) > 0 {
				if rc.RemoteMTA != "" {
					fmt.Fprintf(&b, l.answered+"\n", rc.RemoteMTA)
				} else {
					b.WriteString(l.reason + "\n")
				}
				for _, line := range lines {
					b.WriteString("      " + line + "\n")
				}
			}
			if a == Delayed && !rc.RetryUntil.IsZero() {
				fmt.Fprintf(&b, l.retry+"\n", l.date(rc.RetryUntil))
			}
			b.WriteString("\n")
		}
	}
	if note != "" {
		b.WriteString(note + "\n")
	}
	return b.String()
}
