#ifndef PKG04_L04_05_H
#define PKG04_L04_05_H
#include <string>
#include <vector>

namespace l04_05 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l04_05

#endif
