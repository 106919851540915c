#ifndef PKG04_L04_07_H
#define PKG04_L04_07_H
#include <string>
#include <vector>

namespace l04_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_07

#endif
