pub struct Receipt; pub struct ReceiptBody; pub enum Task {} pub enum ReceiptError {}
