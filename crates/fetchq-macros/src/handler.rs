//! Expansion of `#[fetchq::handler]`.
//!
//! ```text
//! #[fetchq::handler(queue = "avengers")]
//! async fn scrape(doc: Doc<Profile>, ctx: Context) -> fetchq::Result<Outcome> { body }
//! ```
//! becomes a unit struct `scrape` implementing `Handler` (so `register(scrape)`
//! works) that derefs to a function pointer (so `scrape(doc, ctx).await` still
//! calls the function), and the function itself under a hidden name.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type};

use crate::args::Args;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            // not even a function: report and give the item back untouched
            let err = e.to_compile_error();
            return quote! { #err #item };
        }
    };
    let parsed = Args::parse(args);
    let checked = check_signature(&func);
    match (parsed, checked) {
        (Ok(args), Ok(sig)) => generate(&args, &func, &sig),
        (a, s) => {
            let mut errors = TokenStream::new();
            for e in [a.err(), s.err()].into_iter().flatten() {
                errors.extend(e.to_compile_error());
            }
            // keep the function so editors and other code still see it
            quote! { #errors #func }
        }
    }
}

/// What the signature tells: the payload type and whether a context is taken.
struct Signature {
    payload: Type,
    takes_context: bool,
}

fn last_segment_is(ty: &Type, name: &str) -> Option<PathArguments> {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .filter(|s| s.ident == name)
            .map(|s| s.arguments.clone()),
        _ => None,
    }
}

fn check_signature(func: &ItemFn) -> syn::Result<Signature> {
    let sig = &func.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "a fetchq handler must be an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a fetchq handler cannot be generic",
        ));
    }
    if let ReturnType::Default = sig.output {
        errors.push(syn::Error::new_spanned(
            &sig.ident,
            "a fetchq handler returns `fetchq::Result<fetchq::Outcome>` (or an `Outcome`)",
        ));
    }
    let mut payload = None;
    let mut takes_context = false;
    for (i, input) in sig.inputs.iter().enumerate() {
        let ty = match input {
            FnArg::Receiver(r) => {
                errors.push(syn::Error::new_spanned(
                    r,
                    "a fetchq handler is a free function: no `self`",
                ));
                continue;
            }
            FnArg::Typed(t) => &*t.ty,
        };
        match i {
            0 => match last_segment_is(ty, "Doc") {
                Some(PathArguments::AngleBracketed(a)) if a.args.len() == 1 => {
                    if let Some(GenericArgument::Type(t)) = a.args.first() {
                        payload = Some(t.clone());
                    }
                }
                _ => errors.push(syn::Error::new_spanned(
                    ty,
                    "the first argument must be the document, `fetchq::Doc<T>`, where T is the payload type",
                )),
            },
            1 => {
                if last_segment_is(ty, "Context").is_some() {
                    takes_context = true;
                } else {
                    errors.push(syn::Error::new_spanned(ty, "the second argument, if any, must be `fetchq::Context`"));
                }
            }
            _ => errors.push(syn::Error::new_spanned(
                input,
                "too many arguments: a fetchq handler takes `doc: fetchq::Doc<T>` and optionally `ctx: fetchq::Context`",
            )),
        }
    }
    if sig.inputs.is_empty() {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "a fetchq handler takes the document: `doc: fetchq::Doc<T>`",
        ));
    }
    let mut errors = errors.into_iter();
    if let Some(mut first) = errors.next() {
        first.extend(errors);
        return Err(first);
    }
    match payload {
        Some(payload) => Ok(Signature {
            payload,
            takes_context,
        }),
        None => Err(syn::Error::new_spanned(
            &sig.ident,
            "a fetchq handler takes `doc: fetchq::Doc<T>`",
        )),
    }
}

fn duration_tokens(d: std::time::Duration) -> TokenStream {
    let nanos = d.as_nanos() as u64;
    quote! { ::std::time::Duration::from_nanos(#nanos) }
}

fn generate(args: &Args, func: &ItemFn, sig: &Signature) -> TokenStream {
    let krate = args
        .krate
        .clone()
        .map_or_else(|| quote! { ::fetchq }, |p| quote! { #p });
    let name = &func.sig.ident;
    let vis = &func.vis;
    let inner = format_ident!("__fetchq_handler_{}", name);
    let payload = &sig.payload;
    let output = match &func.sig.output {
        ReturnType::Type(_, t) => quote! { #t },
        ReturnType::Default => quote! { () },
    };
    let (docs, others): (Vec<_>, Vec<_>) =
        func.attrs.iter().partition(|a| a.path().is_ident("doc"));
    let block = &func.block;
    let inputs = &func.sig.inputs;

    let queue = args.queue.clone().unwrap_or_default();
    let mut options = quote! { #krate::HandlerOptions::new(#queue) };
    if let Some(v) = args.version {
        options.extend(quote! { .version(#v) });
    }
    if let Some(n) = args.concurrency {
        let n = n as usize;
        options.extend(quote! { .concurrency(#n) });
    }
    // unset, the batch follows the concurrency (HandlerOptions' own rule)
    if let Some(n) = args.batch {
        let n = n as usize;
        options.extend(quote! { .batch(#n) });
    }
    if let Some(d) = args.lease {
        let d = duration_tokens(d);
        options.extend(quote! { .lease(#d) });
    }
    if let Some(d) = args.idle_poll {
        let d = duration_tokens(d);
        options.extend(quote! { .idle_poll(#d) });
    }
    match args.max_runtime {
        Some(Some(d)) => {
            let d = duration_tokens(d);
            options.extend(quote! { .max_runtime(::core::option::Option::Some(#d)) });
        }
        Some(None) => options.extend(quote! { .max_runtime(::core::option::Option::None) }),
        None => {}
    }
    if let Some(v) = args.migrate_to {
        options.extend(quote! { .migrate_to(#v) });
    }
    if let Some(n) = &args.name {
        options.extend(quote! { .named(#n) });
    }
    // a handler on a calendar: its document's subject is the function's name
    // unless `subject` says otherwise (stable across versions and renames of
    // the handler's `name`, so the schedule keeps firing the same document)
    if let Some(c) = &args.cron {
        let subject = args.subject.clone().unwrap_or_else(|| name.to_string());
        options.extend(quote! { .cron(#c).cron_subject(#subject) });
        if let Some(tz) = &args.tz {
            options.extend(quote! { .tz(#tz) });
        }
    }

    let (fn_args, call_args, call_in_handle) = if sig.takes_context {
        (
            quote! { #krate::Doc<#payload>, #krate::Context },
            quote! { |doc, ctx| ::std::boxed::Box::pin(#inner(doc, ctx)) },
            quote! { #inner(doc, ctx).await },
        )
    } else {
        (
            quote! { #krate::Doc<#payload> },
            quote! { |doc| ::std::boxed::Box::pin(#inner(doc)) },
            quote! { { let _ = ctx; #inner(doc).await } },
        )
    };
    // errors about Send or the return type point at the user's signature
    let span = func.sig.span();
    let fut = quote_spanned! {span=>
        ::core::pin::Pin<::std::boxed::Box<dyn ::core::future::Future<Output = #output> + ::core::marker::Send + 'static>>
    };
    // a return type that is not an outcome is reported on that type
    let into_result = quote_spanned! {func.sig.output.span()=>
        <#output as #krate::IntoHandlerResult>::into_handler_result(#call_in_handle)
    };

    quote! {
        #(#others)*
        #[doc(hidden)]
        #[allow(non_snake_case)]
        #vis async fn #inner(#inputs) -> #output #block

        #(#docs)*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #name;

        const _: () = {
            type __Call = fn(#fn_args) -> #fut;
            static __CALL: __Call = #call_args;

            impl ::core::ops::Deref for #name {
                type Target = __Call;
                fn deref(&self) -> &__Call {
                    &__CALL
                }
            }

            #[#krate::async_trait]
            impl #krate::Handler for #name {
                type Payload = #payload;

                fn options(&self) -> #krate::HandlerOptions {
                    #options
                }

                async fn handle(
                    &self,
                    doc: #krate::Doc<#payload>,
                    ctx: #krate::Context,
                ) -> ::core::result::Result<#krate::Outcome, #krate::HandlerError> {
                    #into_result
                }
            }
        };
    }
}
