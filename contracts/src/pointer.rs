//! `bver://` pointers: [`RefPtr`], [`AttributePath`], [`AttributePointer`] and their strict parser.
