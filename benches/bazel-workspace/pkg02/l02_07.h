#ifndef PKG02_L02_07_H
#define PKG02_L02_07_H
#include <string>
#include <vector>

namespace l02_07 {
int score(const std::vector<int>& xs);
std::string describe(int seed);
}  // namespace l02_07

#endif
