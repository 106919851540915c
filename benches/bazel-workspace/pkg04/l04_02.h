#ifndef PKG04_L04_02_H
#define PKG04_L04_02_H
#include <string>
#include <vector>

namespace l04_02 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_02

#endif
